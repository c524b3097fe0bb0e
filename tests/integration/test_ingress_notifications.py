"""`/v1/notifications` through the real ingress app, over rows the real delivery consumer wrote:
the caller's own list (filters, cursor pages, unread count), read and unread marks."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from events.notification import NotificationChannel, NotificationPriority
from infra.auth import Scope, SqlApiKeyStore
from tests.ingress_support import IngressKeys, ingress_app, ingress_client
from tests.integration.test_notification_delivery import setup
from tests.notification_fakes import REQUESTED_AT, requested

if TYPE_CHECKING:
    import httpx
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

PATH = "/v1/notifications"


async def _key(engine: AsyncEngine) -> tuple[dict[str, str], str]:
    issued = await SqlApiKeyStore(engine).create(scopes=[Scope.EVENTS_READ], name="reader")
    return IngressKeys.bearer(issued.token), f"key:{issued.key.id}"


async def _get(http: httpx.AsyncClient, headers: dict[str, str], **query: Any) -> Any:
    response = await http.get(PATH, headers=headers, params=query)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_caller_lists_pages_filters_and_marks_their_own_notifications(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    (ana, ana_id), (bo, _) = await _key(engine), await _key(engine)
    high = NotificationPriority.HIGH
    async with setup(settings, engine, amqp, allow_private=False, recipient=ana_id) as s:
        in_app = [
            requested(recipient=ana_id),
            requested(recipient=ana_id, priority=high),
            requested(recipient=ana_id),
        ]
        refused = requested(NotificationChannel.CHAT_WEBHOOK, recipient=ana_id)  # SSRF: failed
        mailed = requested(NotificationChannel.EMAIL, recipient=ana_id)  # delivered: not listed
        for message in (*in_app, refused, mailed):
            await s.driver.deliver(message)
    ids = {str(m.data.notification_id) for m in (*in_app, refused)}  # type: ignore[attr-defined]
    async with ingress_app(settings, engine=engine) as app, ingress_client(app) as http:
        listed = await _get(http, ana)
        assert {item["notification_id"] for item in listed["items"]} == ids
        assert listed["unread_count"] == 4
        failed = [item for item in listed["items"] if item["status"] == "failed"]
        assert [item["channel"] for item in failed] == ["chat_webhook"]
        assert "non-public address" in failed[0]["error"]

        first = await _get(http, ana, limit=3)
        rest = await _get(http, ana, limit=3, cursor=first["next_cursor"])
        assert rest["next_cursor"] is None
        paged = [item["notification_id"] for item in first["items"] + rest["items"]]
        assert paged == [item["notification_id"] for item in listed["items"]]

        (urgent,) = (await _get(http, ana, priority="high"))["items"]
        assert urgent["notification_id"] == str(in_app[1].data.notification_id)  # type: ignore[attr-defined]
        later = (REQUESTED_AT + timedelta(seconds=1)).isoformat()
        assert (await _get(http, ana, since=later))["items"] == []

        marked = await http.post(f"{PATH}/{urgent['notification_id']}/read", headers=ana)
        assert marked.status_code == 200, marked.text
        assert marked.json()["read_at"] is not None
        assert len((await _get(http, ana, unread="true"))["items"]) == 3
        assert len((await _get(http, ana, unread="false"))["items"]) == 1
        count = await http.get(f"{PATH}/unread-count", headers=ana)
        assert count.json() == {"unread_count": 3}
        unmarked = await http.post(f"{PATH}/{urgent['notification_id']}/unread", headers=ana)
        assert unmarked.json()["read_at"] is None

        assert (await _get(http, bo))["items"] == []  # nobody reads another's list
        theirs = await http.post(f"{PATH}/{urgent['notification_id']}/read", headers=bo)
        assert theirs.status_code == 404
        assert theirs.headers["content-type"] == "application/problem+json"
        assert (await _get(http, ana))["unread_count"] == 4


async def test_a_cursor_it_did_not_hand_out_and_an_anonymous_caller_are_refused(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    headers, _ = await _key(engine)
    async with ingress_app(settings, engine=engine) as app, ingress_client(app) as http:
        bad = await http.get(PATH, headers=headers, params={"cursor": "bm9wZQ"})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        far = await http.get(PATH, headers=headers, params={"since": "0001-01-01T00:00:00+01:00"})
        assert far.status_code == 422, far.text
        lax = await http.get(PATH, headers=headers, params={"since": "0.5", "unread": "1"})
        assert lax.status_code == 422, lax.text
        assert (await http.get(PATH)).status_code == 401
