"""The live-push fan-out with fakes: routing per principal, the replay/live seam, bounds."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from events.notification import NotificationPriority
from producers.ingress.push.hub import (
    SHUTDOWN,
    SLOW,
    PushedNotification,
    PushHub,
    SubscriptionClosedError,
)
from producers.ingress.push.session import HEARTBEAT, PushStream, Truncated

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

SHORT = 0.01


def note(position: int, recipient: str = "key:alice") -> PushedNotification:
    return PushedNotification(
        position=position,
        notification_id=uuid.uuid4(),
        recipient=recipient,
        priority=NotificationPriority.NORMAL,
        subject=f"n{position}",
        body="b",
        occurred_at=datetime.now(UTC),
    )


class FakeMissed:
    """The log: what it holds per principal, and what arrives live while it is read."""

    def __init__(
        self, items: list[PushedNotification], during: Callable[[], object] = lambda: None
    ) -> None:
        self.items = items
        self.during = during
        self.asked: list[tuple[str, int, int]] = []

    async def missed(self, principal: str, *, after: int, limit: int) -> list[PushedNotification]:
        self.asked.append((principal, after, limit))
        self.during()  # live messages reach the hub while the replay reads the log
        found = [i for i in self.items if i.recipient == principal and i.position > after]
        return found[:limit]


async def take(stream: object, count: int) -> list[object]:
    got = []
    async for item in stream:  # type: ignore[attr-defined]
        got.append(item)
        if len(got) == count:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    return got


def positions(items: Sequence[object]) -> list[int]:
    return [i.position for i in items if isinstance(i, PushedNotification)]


async def test_each_principal_receives_only_their_own_notifications() -> None:
    hub = PushHub(queue_limit=10)
    alice, bob = hub.subscribe("key:alice"), hub.subscribe("key:bob")
    assert hub.publish(note(1, "key:alice")) == 1
    assert hub.publish(note(2, "key:carol")) == 0
    got = await alice.next(SHORT)
    assert got is not None
    assert got.position == 1
    assert await bob.next(SHORT) is None  # a heartbeat: nothing for bob


async def test_every_client_of_one_principal_receives_the_notification() -> None:
    hub = PushHub(queue_limit=10)
    tabs = [hub.subscribe("key:alice") for _ in range(3)]
    assert hub.publish(note(7)) == 3
    assert [(await tab.next(SHORT)).position for tab in tabs] == [7, 7, 7]  # type: ignore[union-attr]


async def test_live_messages_during_the_replay_follow_it_without_duplicates_or_gaps() -> None:
    hub = PushHub(queue_limit=10)
    log = FakeMissed([note(1), note(2), note(3)])
    # 2 and 3 arrive live while the log is read (the log has them too), then 4.
    log.during = lambda: [hub.publish(note(p)) for p in (2, 3, 4)]
    stream = PushStream(hub, log, "key:alice", after=0, replay_limit=10, heartbeat=SHORT)
    assert positions(await take(stream, 4)) == [1, 2, 3, 4]
    assert log.asked == [("key:alice", 0, 11)]


async def test_a_live_message_at_or_below_the_last_position_sent_is_dropped() -> None:
    hub = PushHub(queue_limit=10)
    stream = PushStream(hub, FakeMissed([]), "key:alice", after=5, replay_limit=10, heartbeat=SHORT)
    first = await anext(stream)  # subscribed and replayed nothing: a heartbeat
    assert first is HEARTBEAT
    for position in (4, 5, 6, 6, 3, 7):  # a relay republishing after a crash sends 6 again
        hub.publish(note(position))
    assert positions(await take(stream, 2)) == [6, 7]


async def test_without_a_last_position_nothing_is_replayed() -> None:
    hub = PushHub(queue_limit=10)
    log = FakeMissed([note(1)])
    stream = PushStream(hub, log, "key:alice", after=None, replay_limit=10, heartbeat=SHORT)
    assert await anext(stream) is HEARTBEAT
    hub.publish(note(2))
    assert positions(await take(stream, 1)) == [2]
    assert log.asked == []


async def test_more_missed_than_one_replay_ends_the_stream_truncated_at_the_last_sent() -> None:
    hub = PushHub(queue_limit=10)
    log = FakeMissed([note(p) for p in (3, 5, 8, 9)])
    stream = PushStream(hub, log, "key:alice", after=0, replay_limit=2, heartbeat=SHORT)
    got = [item async for item in stream]
    assert positions(got) == [3, 5]
    assert got[-1] == Truncated(5)
    assert hub.subscriptions == 0
    again = PushStream(hub, log, "key:alice", after=5, replay_limit=2, heartbeat=SHORT)
    assert positions(await take(again, 2)) == [8, 9]  # the reconnect gets the rest


async def test_a_heartbeat_comes_when_nothing_happens() -> None:
    hub = PushHub(queue_limit=10)
    stream = PushStream(
        hub, FakeMissed([]), "key:alice", after=None, replay_limit=1, heartbeat=SHORT
    )
    assert await take(stream, 2) == [HEARTBEAT, HEARTBEAT]


async def test_a_client_that_does_not_keep_up_is_cut_off_and_its_queue_dropped() -> None:
    hub = PushHub(queue_limit=3)
    slow, quick = hub.subscribe("key:alice"), hub.subscribe("key:alice")
    for position in range(1, 4):
        hub.publish(note(position))
        await quick.next(SHORT)
    assert len(slow) == 3
    hub.publish(note(4))  # one more than the bound
    assert slow.closed == SLOW
    assert len(slow) == 0
    assert hub.subscriptions == 1  # only the quick one remains
    with pytest.raises(SubscriptionClosedError) as closed:
        await slow.next(SHORT)
    assert closed.value.reason == SLOW
    assert (await quick.next(SHORT)).position == 4  # type: ignore[union-attr]


async def test_closing_the_hub_ends_every_stream_and_refuses_new_ones() -> None:
    hub = PushHub(queue_limit=3)
    stream = PushStream(hub, FakeMissed([]), "key:alice", after=None, replay_limit=1, heartbeat=60)
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)  # subscribed, waiting for a live message
    assert hub.subscriptions == 1
    hub.close()
    with pytest.raises(SubscriptionClosedError) as closed:
        await asyncio.wait_for(waiting, 5)
    assert closed.value.reason == SHUTDOWN
    assert hub.subscribe("key:alice").closed == SHUTDOWN
    assert hub.subscriptions == 0


async def test_a_stream_is_subscribed_when_made_and_unsubscribed_by_aclose_unread() -> None:
    hub = PushHub(queue_limit=10)
    stream = PushStream(hub, FakeMissed([]), "key:alice", after=None, replay_limit=1, heartbeat=1)
    hub.publish(note(1))  # before the first read: a fresh client misses nothing after its 200
    assert positions(await take(stream, 1)) == [1]
    unread = PushStream(hub, FakeMissed([]), "key:alice", after=None, replay_limit=1, heartbeat=1)
    assert hub.subscriptions == 1
    await unread.aclose()  # e.g. the client left before its response began
    assert hub.subscriptions == 0
