"""One client's stream: what it missed (from the log), then live, with no gap and no duplicate.

The seam: the client's subscription is opened *before* the log is read, so every message
the feed receives from then on is buffered while the replay runs. The relay commits a
position before it publishes the message, so anything the feed received before the
subscription existed is already in the log and the replay finds it. Live messages at or
below the last position sent (replayed ones, or the relay publishing a row again after a
crash) are dropped, so positions reach the client strictly increasing.

The replay is bounded: at most `replay_limit` missed messages per connection. When more
were missed, the stream ends with `Truncated(position)`; the client reconnects after that
position and receives the next ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from producers.ingress.push.hub import PushedNotification

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from producers.ingress.push.hub import PushHub


class MissedNotifications(Protocol):
    """The log's in-app notifications of one recipient after a position (`push.replay`)."""

    async def missed(self, principal: str, *, after: int, limit: int) -> list[PushedNotification]:
        """Up to `limit` of `principal`'s in-app notifications after `after`, in log order."""
        ...


@dataclass(frozen=True)
class Heartbeat:
    """Nothing happened for one heartbeat interval."""


@dataclass(frozen=True)
class Truncated:
    """More were missed than one connection replays: reconnect after `position`."""

    position: int


HEARTBEAT = Heartbeat()


Frame = PushedNotification | Heartbeat | Truncated


class PushStream:
    """One client's frames; subscribed from construction on, so nothing live is missed after.

    An async iterator: `principal`'s notifications after `after` (None: live ones only),
    then live ones, forever. It raises `SubscriptionClosedError` when the hub closes the
    subscription (slow, shutdown, feed lost). `aclose()` unsubscribes (always call it).
    """

    def __init__(
        self,
        hub: PushHub,
        log: MissedNotifications,
        principal: str,
        *,
        after: int | None,
        replay_limit: int,
        heartbeat: float,
    ) -> None:
        self._hub = hub
        self._subscription = hub.subscribe(principal)  # first: buffer live ones from now on
        self._frames = self._run(log, principal, after, replay_limit, heartbeat)

    def __aiter__(self) -> PushStream:
        return self

    async def __anext__(self) -> Frame:
        return await anext(self._frames)

    async def aclose(self) -> None:
        """Unsubscribe and end the frames."""
        self._hub.discard(self._subscription)
        await self._frames.aclose()

    async def _run(
        self,
        log: MissedNotifications,
        principal: str,
        after: int | None,
        replay_limit: int,
        heartbeat: float,
    ) -> AsyncGenerator[Frame, None]:
        try:
            last = 0
            if after is not None:
                last = after
                missed = await log.missed(principal, after=after, limit=replay_limit + 1)
                for item in missed[:replay_limit]:
                    yield item
                    last = item.position
                if len(missed) > replay_limit:
                    yield Truncated(last)
                    return
            while True:
                live = await self._subscription.next(heartbeat)
                if live is None:
                    yield HEARTBEAT
                elif live.position > last:
                    last = live.position
                    yield live
        finally:
            self._hub.discard(self._subscription)
