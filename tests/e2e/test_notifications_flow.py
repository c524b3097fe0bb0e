"""Issue 17 end to end: an approver is told of an approval request on every channel, live.

relay, processor, approval, notification, notification_delivery and ingress run as
`hisho run` processes; a real SMTP server (aiosmtpd) and a real HTTP receiver listen on
127.0.0.1. The approver is in the people directory with an e-mail address and a chat
webhook; an SSE client and a WebSocket client are connected as the approver when the plan is
submitted. Then the SSE client goes away during three more requests and comes back with
`Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any

import httpx
from websockets.asyncio.client import connect

from consumers import notification, notification_delivery
from events import Actor
from infra.db.people import SqlPeople
from infra.message_context import MessageContext
from infra.people import NewPerson
from tests.components_support import component_env, components, free_port
from tests.ingress_support import cli_key, hisho_cli
from tests.notification_servers import smtp_server, webhook_receiver
from tests.processor_support import (
    backlog_worked_off,
    earlier_messages_purged,
    eventually,
    posted_and_processed,
)
from tests.push_support import sse

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

PROCESSES = ("relay", "processor", "approval", "notification", "notification_delivery", "ingress")
DEADLINE = 40.0


async def _processed(
    http: httpx.AsyncClient, token: str, command: str, body: dict[str, Any]
) -> None:
    await posted_and_processed(http, token, command, body, deadline=DEADLINE)


async def _submit(http: httpx.AsyncClient, token: str, project_id: str, title: str) -> None:
    plan_id = str(uuid.uuid4())
    step = {"kind": "human", "step_id": str(uuid.uuid4()), "title": "Sign"}
    step |= {"assignee": "key:nobody", "instructions": "sign"}
    draft = {"plan_id": plan_id, "project_id": project_id, "title": title, "steps": [step]}
    await _processed(http, token, "DraftPlan", draft)
    await _processed(http, token, "SubmitPlan", {"plan_id": plan_id})


async def test_an_approver_is_told_in_app_live_by_mail_and_by_chat_and_catches_up_on_reconnect(
    settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    async with smtp_server() as inbox, webhook_receiver() as receiver:
        port = free_port()
        env = component_env(
            settings,
            HISHO_INGRESS_PORT=str(port),
            HISHO_SMTP_PORT=str(inbox.port),
            HISHO_CHAT_WEBHOOK_ALLOW_PRIVATE="true",  # the receiver is on loopback
        )
        hisho_cli(env, "migrate")
        hisho_cli(env, "topology")
        await earlier_messages_purged(
            settings, notification.CONSUMER, notification_delivery.CONSUMER
        )
        (_, owner), (bob_id, bob) = (cli_key(env, "commands:write", "state:read") for _ in range(2))
        approver = f"key:{bob_id}"
        contact = NewPerson(
            principal_id=approver,
            display_name="Bob",
            email="bob@example.org",
            chat_webhook_url=receiver.url,
        )
        await SqlPeople(engine).register(contact, context=MessageContext.start(Actor.system("e2e")))
        with components(env, tmp_path, PROCESSES):
            await backlog_worked_off(settings)
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                project_id = str(uuid.uuid4())
                policy = {"approvers": [approver], "required_approvals": 1}
                body = {"project_id": project_id, "name": "Told", "policy": policy}
                await _processed(http, owner, "CreateProject", body)
                ws_url = f"ws://127.0.0.1:{port}/v1/notifications/ws?access_token={bob}"
                async with sse(http, bob) as live, connect(ws_url) as ws:
                    await ws.send(json.dumps({"after": None}))
                    await _submit(http, owner, project_id, "Budget")
                    (pushed,) = await live.notifications(1, timeout=DEADLINE)
                    framed = await _ws_notification(ws)
                    last_seen = live.last_id
                assert "Budget" in pushed.json()["subject"]
                assert framed["notification"]["notification_id"] == pushed.json()["notification_id"]

                async def one_mail_and_one_post() -> None:
                    assert len(inbox.messages) == 1
                    assert len(receiver.accepted) == 1

                await eventually(one_mail_and_one_post, deadline=DEADLINE)
                assert inbox.messages[0]["To"] == "bob@example.org"
                assert "Budget" in inbox.messages[0]["Subject"]
                titles = ["Q1", "Q2", "Q3"]
                for title in titles:  # nobody is listening: bob is away
                    await _submit(http, owner, project_id, title)
                async with sse(http, bob, last_event_id=last_seen) as back:
                    missed = await back.notifications(3, timeout=DEADLINE)
                assert [
                    next(t for t in titles if t in m.json()["subject"]) for m in missed
                ] == titles
                positions = [int(m.id or 0) for m in missed]
                assert positions == sorted(positions)
                assert int(last_seen or 0) < positions[0]
            await asyncio.sleep(1.0)  # nothing more arrives: one per channel and request
            assert len(inbox.messages) == 4
            assert len(receiver.accepted) == 4


async def _ws_notification(ws: Any) -> dict[str, Any]:
    async with asyncio.timeout(DEADLINE):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame.get("type") == "notification":
                return frame
