"""Text PostgreSQL cannot store (NUL, lone surrogates) is 422 at the ingress on the real
broker, and nothing reaches the command queue (issue 13, item 7: it used to be accepted and
then parked by the processor with `UntranslatableCharacterError`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from uuid import uuid4

import pytest

from tests.ingress_support import IngressKeys, ingress_app, ingress_client, make_test_keys, tap

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings


@pytest.fixture(scope="module")
async def keys(engine: AsyncEngine) -> IngressKeys:
    return await make_test_keys(engine)


def _project(name: str, approver: str) -> bytes:
    policy = {"approvers": [approver], "required_approvals": 1}
    return json.dumps({"project_id": str(uuid4()), "name": name, "policy": policy}).encode()


async def test_unstorable_text_is_422_and_nothing_reaches_the_broker(
    settings: Settings, engine: AsyncEngine, keys: IngressKeys, amqp: AbstractRobustConnection
) -> None:
    headers = {**IngressKeys.bearer(keys.writer), "Content-Type": "application/json"}
    refused = [_project("p\x00", "key:a"), _project("\ud800", "key:a"), _project("p\x00", "\x00")]
    async with (
        ingress_app(settings, engine=engine) as app,
        ingress_client(app) as client,
        tap(amqp, "CreateProject") as commands,
    ):
        answers = [
            await client.post("/v1/commands/CreateProject", content=body, headers=headers)
            for body in refused
        ]
        sentinel = await client.post(
            "/v1/commands/CreateProject", content=_project("p", "key:a"), headers=headers
        )
        # The sentinel's 202 came after its confirm: it is in the tap, behind anything before.
        reached = [message.message_id for message in await commands.drain()]
    assert [answer.status_code for answer in answers] == [422, 422, 422]
    assert [[e["field"] for e in answer.json()["errors"]] for answer in answers] == [
        ["body.name"],
        ["body.name"],
        ["body.policy.approvers.0", "body.policy.approvers"],  # a principal id's pattern
    ]
    assert sentinel.status_code == 202
    assert reached == [sentinel.json()["command_id"]]
