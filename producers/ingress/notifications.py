"""`/v1/notifications`: the caller's own notification list, unread count and read marks.

`GET /v1/notifications` pages the caller's notifications (by their principal: nobody reads
another's), newest first, filtered by `unread`, `priority` and `since`, with the unread count;
`GET /v1/notifications/unread-count` answers the count alone. Read and unread are marked
synchronously, not by command: `POST /v1/notifications/{id}/read` and `.../unread` change
the row's `read_at` (a mark on the person's own list, not a fact of the event log); another
person's notification answers 404, as an absent one does. The live streams
(`/v1/notifications/stream`, `/ws`) are `producers.ingress.push`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol
from uuid import UUID

from fastapi import Depends, Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from events.notification import NotificationPriority
from infra.db.notification_list import InvalidCursorError, NotificationItem
from producers.ingress.endpoints import endpoint as _endpoint
from producers.ingress.endpoints import param as _param
from producers.ingress.problems import Problem, ProblemError, problem_responses
from producers.ingress.status import database_unavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fastapi import APIRouter

    from infra.auth import Principal

NOTIFICATIONS_PATH = "/v1/notifications"
_CURSOR = Annotated[
    str,
    Query(pattern=r"^[A-Za-z0-9_-]+$", max_length=200, description="`next_cursor` of a page"),
]
_LIMIT = Annotated[int, Query(ge=1, le=200)]
_ID = Annotated[UUID, Path(description="The notification id")]
# `true` or `false` only (a lax bool would take `1`, `yes`, `on`, ...).
_UNREAD = Annotated[
    Literal["true", "false"],
    Query(description="`true`: unread only; `false`: read only"),
]
# RFC 3339 only (a lax datetime would take `0.5` as a Unix time).
_SINCE = Annotated[
    str,
    Query(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$",
        max_length=40,
        description="Only notifications created at or after this time (RFC 3339)",
        json_schema_extra={"format": "date-time"},
    ),
]


class NotificationListStore(Protocol):
    """The list as the routes use it (`infra.db.notification_list.SqlNotificationList`)."""

    async def page(
        self,
        recipient: str,
        *,
        unread: bool | None = None,
        priority: NotificationPriority | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[NotificationItem], str | None]:
        """A page of the recipient's notifications and the next cursor."""
        ...

    async def unread_count(self, recipient: str) -> int:
        """How many are unread."""
        ...

    async def mark(
        self, recipient: str, notification_id: UUID, *, read: bool, at: datetime
    ) -> NotificationItem | None:
        """Mark one read or unread; None if the recipient has no such notification."""
        ...


class NotificationPage(BaseModel):
    """One page of the caller's notifications, newest first, and their unread count."""

    items: list[NotificationItem]
    next_cursor: str | None
    unread_count: int


class UnreadCount(BaseModel):
    """How many of the caller's notifications are unread."""

    unread_count: int


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("query", field), "msg": message, "type": "value"}])


def _utc(since: str | None) -> datetime | None:
    """`since` (RFC 3339, with its offset) in UTC; 422 if it is no time or out of range."""
    if since is None:
        return None
    try:
        return datetime.fromisoformat(since).astimezone(UTC)
    except (ValueError, OverflowError):
        raise _invalid("since", "is not an RFC 3339 time in range") from None


class _Routes:
    def __init__(self, notifications: NotificationListStore, clock: Callable[[], datetime]) -> None:
        self.notifications = notifications
        self.clock = clock

    async def list_page(
        self,
        *,
        caller: Principal,
        unread: Literal["true", "false"] | None,
        priority: NotificationPriority | None,
        since: str | None,
        cursor: str | None,
        limit: int,
    ) -> NotificationPage:
        who, after = caller.actor.principal, _utc(since)
        try:
            items, next_cursor = await self.notifications.page(
                who,
                unread=None if unread is None else unread == "true",
                priority=priority,
                since=after,
                cursor=cursor,
                limit=limit,
            )
            count = await self.notifications.unread_count(who)
        except InvalidCursorError:
            raise _invalid("cursor", "is not a cursor this list handed out") from None
        except Exception as exc:
            raise database_unavailable(exc) from exc
        return NotificationPage(items=items, next_cursor=next_cursor, unread_count=count)

    async def unread(self, caller: Principal) -> UnreadCount:
        try:
            count = await self.notifications.unread_count(caller.actor.principal)
        except Exception as exc:
            raise database_unavailable(exc) from exc
        return UnreadCount(unread_count=count)

    async def mark(self, caller: Principal, notification_id: UUID, *, read: bool) -> Any:  # noqa: ANN401
        try:
            item = await self.notifications.mark(
                caller.actor.principal, notification_id, read=read, at=self.clock()
            )
        except Exception as exc:
            raise database_unavailable(exc) from exc
        if item is None:
            raise ProblemError(
                404, "not-found", "Not found", f"you have no notification {notification_id}"
            )
        return item

    async def read(self, caller: Principal, notification_id: UUID) -> NotificationItem:
        item: NotificationItem = await self.mark(caller, notification_id, read=True)
        return item

    async def unread_mark(self, caller: Principal, notification_id: UUID) -> NotificationItem:
        item: NotificationItem = await self.mark(caller, notification_id, read=False)
        return item


def add_notification_routes(
    router: APIRouter,
    *,
    notifications: NotificationListStore,
    clock: Callable[[], datetime],
    reader: Callable[..., Awaitable[Principal]],
) -> None:
    """Add the list's operations; `reader` guards them (any authenticated caller, on their own)."""
    routes = _Routes(notifications, clock)
    caller = _param("caller", Annotated[Any, Depends(reader)])
    common = problem_responses(401, 422, 429, 503)
    router.add_api_route(
        NOTIFICATIONS_PATH,
        _endpoint(
            routes.list_page,
            caller,
            _param("unread", _UNREAD | None, None),
            _param("priority", Annotated[NotificationPriority | None, Query()], None),
            _param("since", _SINCE | None, None),
            _param("cursor", _CURSOR | None, None),
            _param("limit", _LIMIT, 50),
        ),
        methods=["GET"],
        response_model=NotificationPage,
        operation_id="list_notifications",
        tags=["notifications"],
        summary="List your notifications, newest first",
        responses=common,
    )
    router.add_api_route(
        f"{NOTIFICATIONS_PATH}/unread-count",
        _endpoint(routes.unread, caller),
        methods=["GET"],
        response_model=UnreadCount,
        operation_id="count_unread_notifications",
        tags=["notifications"],
        summary="How many of your notifications are unread",
        responses=problem_responses(401, 429, 503),
    )
    not_found: dict[int | str, dict[str, Any]] = {
        404: {"model": Problem, "description": "You have no such notification"}
    }
    for verb, method in (("read", routes.read), ("unread", routes.unread_mark)):
        router.add_api_route(
            f"{NOTIFICATIONS_PATH}/{{notification_id}}/{verb}",
            _endpoint(method, caller, _param("notification_id", _ID)),
            methods=["POST"],
            response_model=NotificationItem,
            operation_id=f"mark_notification_{verb}",
            tags=["notifications"],
            summary=f"Mark one of your notifications {verb}",
            responses={**common, **not_found},
        )
