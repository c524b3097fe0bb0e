"""kill -9 of the notification delivery consumer right after the SMTP server accepted a
message and before the consumer could record it; then a restart.

What is guaranteed, and checked: the e-mail is never lost, and sent at most twice (the one
window SMTP cannot close: sent, then a crash before the record commits); both copies carry
the same `Message-ID`, so a mail client shows one. The in-app row is exactly one (written in
the consumer's transaction). The chat POST of the same request, in flight at the kill too,
may be sent again after the restart, with the same `Idempotency-Key`: exactly one in effect
for a receiver that honours the key, never lost. Each notification ends delivered once.
"""

from __future__ import annotations

import os
import signal
import uuid
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import text

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

if TYPE_CHECKING:
    from email.message import EmailMessage
    from pathlib import Path

    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

PROCESSES = ("relay", "processor", "approval", "notification", "ingress")
DEADLINE = 60.0
_OUTCOMES = text(
    "SELECT data ->> 'channel', count(*) FROM outbox WHERE type = 'NotificationDelivered'"
    " AND data ->> 'recipient' = :who GROUP BY 1"
)
_IN_APP = text("SELECT count(*) FROM notifications WHERE recipient = :who AND channel = 'in_app'")


async def _processed(
    http: httpx.AsyncClient, token: str, command: str, body: dict[str, Any]
) -> None:
    await posted_and_processed(http, token, command, body, deadline=DEADLINE)


async def test_kill_9_after_smtp_accepted_loses_no_mail_and_sends_it_at_most_twice(
    settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    victims: list[int] = []  # the delivery consumer's pid, killed at the first mail

    def kill_the_sender(_: EmailMessage) -> None:
        if victims:
            os.kill(victims.pop(), signal.SIGKILL)  # before it hears 250, before its commit

    async with smtp_server(on_message=kill_the_sender) as inbox, webhook_receiver() as receiver:
        port = free_port()
        env = component_env(
            settings,
            HISHO_INGRESS_PORT=str(port),
            HISHO_SMTP_PORT=str(inbox.port),
            HISHO_CHAT_WEBHOOK_ALLOW_PRIVATE="true",
        )
        hisho_cli(env, "migrate")
        hisho_cli(env, "topology")
        await earlier_messages_purged(
            settings, notification.CONSUMER, notification_delivery.CONSUMER
        )
        (_, owner), (bob_id, _) = (cli_key(env, "commands:write") for _ in range(2))
        approver = f"key:{bob_id}"
        person = NewPerson(
            principal_id=approver,
            display_name="Bob",
            email="bob@example.org",
            chat_webhook_url=receiver.url,
        )
        await SqlPeople(engine).register(
            person, context=MessageContext.start(Actor.system("chaos"))
        )
        with components(env, tmp_path, PROCESSES) as run:
            victims.append(run.start("notification_delivery").pid)
            await backlog_worked_off(settings)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                project_id, plan_id = str(uuid.uuid4()), str(uuid.uuid4())
                policy = {"approvers": [approver], "required_approvals": 1}
                body = {"project_id": project_id, "name": "Chaos", "policy": policy}
                await _processed(http, owner, "CreateProject", body)
                step = {"kind": "human", "step_id": str(uuid.uuid4()), "title": "Sign"}
                step |= {"assignee": approver, "instructions": "sign"}
                draft = {"plan_id": plan_id, "project_id": project_id, "title": "Once"}
                await _processed(http, owner, "DraftPlan", {**draft, "steps": [step]})
                await _processed(http, owner, "SubmitPlan", {"plan_id": plan_id})

                async def mail_arrived_and_sender_died() -> None:
                    assert inbox.messages
                    assert not victims
                    assert run.processes["notification_delivery"].poll() is not None

                await eventually(mail_arrived_and_sender_died, deadline=DEADLINE)
                run.processes.pop("notification_delivery")
                run.start("notification_delivery")  # the restart redelivers the request

                async def delivered_on_every_channel() -> None:
                    async with engine.connect() as connection:
                        rows = (await connection.execute(_OUTCOMES, {"who": approver})).all()
                    assert dict(rows) == {"email": 1, "in_app": 1, "chat_webhook": 1}, rows

                await eventually(delivered_on_every_channel, deadline=DEADLINE)
        assert 1 <= len(inbox.messages) <= 2  # never lost; at most one duplicate
        assert len({message["Message-ID"] for message in inbox.messages}) == 1
        posts = receiver.accepted
        assert 1 <= len(posts) <= 2  # never lost; a copy only if it was in flight at the kill
        assert len({post.headers["idempotency-key"] for post in posts}) == 1
        async with engine.connect() as connection:
            assert (await connection.execute(_IN_APP, {"who": approver})).scalar_one() == 1
