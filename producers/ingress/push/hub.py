"""The in-process fan-out: one per ingress process, subscriptions keyed by principal id.

The feed (`push.feed`) hands every in-app `NotificationRequested` the process's own queue
receives to `PushHub.publish`, which offers it to each subscription of its recipient and to
nobody else. A subscription holds at most `limit` undelivered messages: one more closes it
(reason `slow`) and drops what it held, so a client that does not read cannot grow memory;
it reconnects with its last position and is replayed from the log (`push.session`).
Everything here runs on the event loop's thread: no locks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from events.notification import NotificationPriority

SLOW = "slow"  # the client did not keep up: its queue was full
SHUTDOWN = "shutdown"  # the ingress is stopping
FEED_LOST = "feed-lost"  # the broker connection was lost: live messages may have been missed


class PushedNotification(BaseModel):
    """An in-app notification as clients receive it; `position` is its place in the log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    position: int
    notification_id: UUID
    recipient: str
    priority: NotificationPriority
    subject: str
    body: str
    occurred_at: datetime


class SubscriptionClosedError(Exception):
    """The subscription was closed; `reason` says why (`slow`, `shutdown`, `feed-lost`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Subscription:
    """One connected client's bounded queue of live notifications."""

    def __init__(self, hub: PushHub, principal: str, limit: int) -> None:
        self.principal = principal
        self._hub = hub
        self._limit = limit
        self._items: deque[PushedNotification] = deque()
        self._wakeup = asyncio.Event()
        self.closed: str | None = None  # the reason, once closed

    def offer(self, item: PushedNotification) -> None:
        """Queue `item`; a full queue closes the subscription instead (`slow`)."""
        if self.closed is not None:
            return
        if len(self._items) >= self._limit:
            self.close(SLOW)
            return
        self._items.append(item)
        self._wakeup.set()

    def close(self, reason: str) -> None:
        """Stop receiving, drop what is queued, and wake the reader (it raises `reason`)."""
        if self.closed is None:
            self.closed = reason
            self._items.clear()
            self._hub.discard(self)
            self._wakeup.set()

    async def next(self, heartbeat: float) -> PushedNotification | None:
        """The next live notification, or None after `heartbeat` s without one.

        Raises `SubscriptionClosedError` once the subscription is closed.
        """
        if not self._items and self.closed is None:
            self._wakeup.clear()
            try:
                async with asyncio.timeout(heartbeat):
                    await self._wakeup.wait()
            except TimeoutError:
                return None
        if self.closed is not None:
            raise SubscriptionClosedError(self.closed)
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


class PushHub:
    """Routes each notification to the subscriptions of its recipient."""

    def __init__(self, *, queue_limit: int) -> None:
        self._queue_limit = queue_limit
        self._by_principal: dict[str, set[Subscription]] = {}
        self.closing = False

    def subscribe(self, principal: str) -> Subscription:
        """A new subscription for `principal`'s notifications (closed at once when stopping)."""
        subscription = Subscription(self, principal, self._queue_limit)
        if self.closing:
            subscription.close(SHUTDOWN)
            return subscription
        self._by_principal.setdefault(principal, set()).add(subscription)
        return subscription

    def discard(self, subscription: Subscription) -> None:
        """Forget a subscription (its client left, or it was closed)."""
        subscribers = self._by_principal.get(subscription.principal)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._by_principal[subscription.principal]

    def publish(self, item: PushedNotification) -> int:
        """Offer `item` to every subscription of its recipient; return how many there were."""
        subscribers = self._by_principal.get(item.recipient)
        if not subscribers:
            return 0
        offered = list(subscribers)  # a full one removes itself while we iterate
        for subscription in offered:
            subscription.offer(item)
        return len(offered)

    def close_all(self, reason: str) -> None:
        """Close every subscription (their clients reconnect and are replayed from the log)."""
        for subscribers in list(self._by_principal.values()):
            for subscription in list(subscribers):
                subscription.close(reason)

    def close(self) -> None:
        """Refuse new subscriptions and close the open ones (SIGTERM: streams end)."""
        self.closing = True
        self.close_all(SHUTDOWN)

    @property
    def subscriptions(self) -> int:
        """How many subscriptions are open."""
        return sum(len(subscribers) for subscribers in self._by_principal.values())
