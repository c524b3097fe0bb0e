"""`hisho parked` on REAL parked messages (the demo consumer parks on the session's servers).

Each command acts as `system:cli`; bad input ends with one line on stderr and a non-zero
exit, and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select
from typer.testing import CliRunner

from hisho.cli import app
from infra.db.parked import parked_aggregate_id
from infra.db.tables import outbox
from tests.parked_support import console, parked_messages, until

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings
    from tests.parked_support import Parked


async def _run(*args: str) -> tuple[int, str, str]:
    """`hisho parked <args>` (in a thread: the command runs its own event loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, app, ["parked", *args])
    return result.exit_code, result.stdout, result.stderr


async def _state(engine: AsyncEngine, settings: Settings, message_id: str) -> str:
    async with console(engine, settings.amqp) as parking:
        return (await parking.show(message_id)).state


async def _applied_once(parked: Parked, *envelopes: object) -> None:
    async def applied() -> bool:
        return all([await parked.effects_of(e) == 1 for e in envelopes])  # type: ignore[arg-type]

    await until(applied, "the re-driven messages' effects")


async def test_list_and_show_a_parked_message(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    async with parked_messages(engine, amqp, settings.amqp, poison=1, flaky=1) as parked:
        (poison,) = parked.poison
        code, out, err = await _run("list", "--consumer", parked.name)
        assert (code, err) == (0, "")
        lines = out.splitlines()
        assert any(line.startswith(f"{poison.id}  {parked.name}  parked") for line in lines)
        assert f"     1  ValueError  ({parked.name})" in lines
        assert f"     1  ConnectionError  ({parked.name})" in lines
        code, out, _ = await _run(
            "list", "--consumer", parked.name, "--error-type", "ValueError", "--json"
        )
        document = json.loads(out)
        assert [item["message_id"] for item in document["items"]] == [str(poison.id)]
        code, out, err = await _run("show", str(poison.id))
        assert (code, err) == (0, "")
        shown = json.loads(out)
        assert shown["body"]["envelope"]["id"] == str(poison.id)
        assert shown["body"]["envelope"]["type"] == "TaskRetried"
        assert shown["headers"]["x-hisho-parked-error"] == "ValueError"
        assert shown["state"] == "parked"


async def test_redrive_one_then_all_by_filter_then_discard(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    async with parked_messages(engine, amqp, settings.amqp, poison=4) as parked:
        first, *others = parked.poison
        parked.failures.poison.clear()
        code, out, err = await _run("redrive", str(first.id))
        assert (code, out, err) == (0, f"re-drove {first.id} to {parked.name}\n", "")
        await _applied_once(parked, first)
        assert await _state(engine, settings, str(first.id)) == "redriven"
        code, out, err = await _run("redrive", str(first.id))
        assert code == 1
        assert err == f"hisho: {str(first.id)!r} is redriven, no longer parked\n"

        bulk = ("redrive", "--all", "--consumer", parked.name, "--rate", "200", "--limit", "2")
        code, out, _ = await _run(*bulk, "--dry-run")
        assert code == 0
        assert len(out.splitlines()) == 2
        assert all(line.startswith("would re-drive ") for line in out.splitlines())
        assert await parked.copies() == 3  # a dry run changes nothing
        code, out, _ = await _run(*bulk)
        *sent_lines, total = out.splitlines()
        assert (code, total) == (0, "sent 2; applied already (marked only) 0")
        sent = {line.split()[1] for line in sent_lines}
        assert len(sent) == 2
        await _applied_once(parked, *(e for e in others if str(e.id) in sent))
        (last,) = (e for e in others if str(e.id) not in sent)
        assert await _state(engine, settings, str(last.id)) == "parked"

        code, out, err = await _run("discard", str(last.id), "--reason", "stale test data")
        assert (code, out, err) == (0, f"discarded {last.id} of {parked.name}\n", "")
        code, out, _ = await _run("list", "--consumer", parked.name)
        assert out.splitlines() == []  # nothing parked any more: no rows, no groups
        code, out, _ = await _run("list", "--consumer", parked.name, "--state", "discarded")
        assert out.splitlines()[0].startswith(f"{last.id}  {parked.name}  discarded")
        async with engine.connect() as connection:
            rows = list(
                await connection.execute(
                    select(outbox.c.type, outbox.c.data, outbox.c.actor).where(
                        outbox.c.aggregate_id == parked_aggregate_id(parked.name, str(last.id))
                    )
                )
            )
        assert [(row.type, row.data, row.actor["id"]) for row in rows] == [
            (
                "ParkedMessageDiscarded",
                {"message_id": str(last.id), "consumer": parked.name, "reason": "stale test data"},
                "cli",
            )
        ]
        assert await parked.copies() == 0
        await asyncio.sleep(0.3)
        assert [await parked.effects_of(e) for e in parked.poison].count(1) == 3
        assert await parked.effects_of(last) == 0


async def test_bad_input_is_one_line_on_stderr_and_changes_nothing(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    async with parked_messages(engine, amqp, settings.amqp) as parked:
        (poison,) = parked.poison
        unknown = str(uuid.uuid4())
        refused = [
            (("list", "--older-than", "x"), 2, "older-than must look like"),
            (("list", "--consumer", "nobody_here"), 2, "no consumer 'nobody_here'"),
            (("list", "--state", "lost"), 2, "state must be one of"),
            (("list", "--cursor", "???"), 2, "cursor"),
            (("redrive",), 2, "give a message id or --all"),
            (("redrive", str(poison.id), "--all"), 2, "not both"),
            (("redrive", "--all", "--younger-than", "2 days"), 2, "younger-than must look like"),
            (("redrive", "--all", "--rate", "0"), 2, "rate must be above 0"),
            (("show", unknown), 1, f"no parked message {unknown!r}"),
            (("redrive", unknown), 1, f"no parked message {unknown!r}"),
            (("discard", unknown), 1, f"no parked message {unknown!r}"),
            (("discard", str(poison.id), "--consumer", "someone_else"), 1, "no parked message"),
        ]
        for args, status, message in refused:
            code, out, err = await _run(*args)
            assert (code, out) == (status, ""), args
            assert err.startswith("hisho: "), (args, err)
            assert message in err, (args, err)
            assert err.count("\n") == 1, (args, err)
        assert await _state(engine, settings, str(poison.id)) == "parked"
        assert await parked.copies() == 1
        assert await parked.effects_of(poison) == 0
