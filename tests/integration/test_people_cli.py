"""`hisho people` on the session's PostgreSQL: each change lands with its event, as `system:cli`.

A refused command (unknown person, a second entry) exits 1 with one line and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from typer.testing import CliRunner

from hisho.cli import app
from infra.db.people import person_aggregate_id
from infra.db.people_tables import people
from infra.db.tables import outbox

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


async def _run(*args: str) -> tuple[int, str, str]:
    """`hisho people <args>` (in a thread: the command runs its own event loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, app, ["people", *args])
    return result.exit_code, result.stdout, result.stderr


async def _state(engine: AsyncEngine, principal_id: str) -> tuple[Any, list[Any]]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(people).where(people.c.principal_id == principal_id))
        ).first()
        events = list(
            await conn.execute(
                select(outbox.c.type, outbox.c.data, outbox.c.actor)
                .where(outbox.c.aggregate_id == person_aggregate_id(principal_id))
                .order_by(outbox.c.aggregate_version)
            )
        )
    return (None if row is None else tuple(row)), events


async def test_add_show_list_update_and_erase(engine: AsyncEngine) -> None:
    pid = f"user:https://issuer.example/{uuid.uuid4()}"
    code, out, err = await _run(
        "add", pid, "--name", "Ada", "--email", "ada@example.org", "--channel", "email", "--digest"
    )
    assert (code, out, err) == (0, f"added {pid}\n", "")
    code, out, _ = await _run("show", pid)
    shown = json.loads(out)
    assert (shown["display_name"], shown["email"], shown["chat_webhook_url"]) == (
        "Ada",
        "ada@example.org",
        None,
    )
    assert shown["preferences"] == {"channels": ["email"], "min_priority": "low", "digest": True}
    code, out, _ = await _run("list")
    assert f"{pid}  Ada  ada@example.org  -" in out.splitlines()

    code, out, _ = await _run(
        "update", pid, "--no-email", "--webhook", "https://chat.example/h", "--min-priority", "high"
    )
    assert (code, out) == (0, f"updated {pid}: email, chat_webhook_url, preferences\n")
    shown = json.loads((await _run("show", pid))[1])
    assert (shown["email"], shown["chat_webhook_url"]) == (None, "https://chat.example/h")
    assert shown["preferences"] == {"channels": ["email"], "min_priority": "high", "digest": True}
    assert (await _run("update", pid, "--name", "Ada"))[1] == f"{pid} unchanged\n"

    assert await _run("erase", pid) == (0, f"erased {pid}\n", "")
    row, events = await _state(engine, pid)
    assert row is None
    assert [e.type for e in events] == ["PersonRegistered", "PersonUpdated", "PersonErased"]
    assert events[1].data["changed"] == ["email", "chat_webhook_url", "preferences"]
    assert {(e.actor["kind"], e.actor["id"]) for e in events} == {("system", "cli")}
    assert "example.org" not in json.dumps([e.data for e in events])


async def test_refusals_exit_1_with_one_line_and_change_nothing(engine: AsyncEngine) -> None:
    pid = f"persona:{uuid.uuid4()}"
    assert (await _run("add", pid, "--name", "Kept"))[0] == 0
    before = await _state(engine, pid)
    code, out, err = await _run("add", pid, "--name", "Second")
    assert (code, out, err) == (1, "", f"hisho: {pid} is already in the directory\n")
    assert await _state(engine, pid) == before

    nobody = f"persona:{uuid.uuid4()}"
    for args in (("show", nobody), ("erase", nobody), ("update", nobody, "--name", "x")):
        code, out, err = await _run(*args)
        assert (code, out, err) == (1, "", f"hisho: no person {nobody}\n"), args
    assert await _state(engine, nobody) == (None, [])
