"""The outbox relay: positions, chains, publishes (with confirms) and marks outbox rows.

Ordering guarantee, and why it holds
------------------------------------
Positions are gap-free, strictly increasing, never skip a committed row, and keep each
aggregate's `aggregate_version` order.

* One writer. Only the leader writes `position`, and it is the process holding the
  session advisory lock `RELAY_LOCK_KEY` (`producers.relay.leader`). Every position is
  written on *that same connection*: the lock is the fence. A leader that lost its
  connection has lost its lock too, and it cannot write a position through a connection
  that no longer exists. Standbys block in `pg_advisory_lock` and take over the moment the
  leader's session ends.
* No skipped rows. The leader never remembers "the last seq it saw" (the trap behind
  Watermill #311: a transaction that took seq 7 but commits after seq 8 was published is
  lost forever). Each claim scans *every* unpublished row without a position
  (`outbox_unpublished`, a partial index as small as the backlog) in seq order. A row that
  commits late is simply still pending at the next scan and gets the next position: positions
  follow the order in which rows became visible, so a reader paging "position > P" never
  misses one.
* No gaps. Positions continue from the tail read at the start of the term, one per claimed
  row, and are committed in one transaction per batch; a failed transaction ends the term,
  and the next term re-reads the tail. `position` is UNIQUE, so a bug cannot duplicate one.
* Aggregate order. Version v+1 of an aggregate is written by a transaction that read
  version v as committed (the aggregate row is the concurrency check). So when v+1 is
  visible, v is visible too, and v has the smaller seq (it was inserted first): the scan
  positions v before v+1, in the same batch or an earlier one.

Crash anywhere, nothing lost
----------------------------
Phase one commits position + prev_hash + hash; phase two publishes; phase three sets
`published_at` only for positions the broker confirmed. Every term begins by republishing,
in position order, the rows that have a position but no `published_at`, with the same
id, position, hash and bytes. A crash or a nack therefore yields duplicates (same
`message_id`), never a gap. Any failure (nack, lost AMQP connection, lost PostgreSQL
connection) ends the term; the next one starts from the database's state after a tenacity
backoff. Published rows are never rewritten: every UPDATE is guarded by `position IS NULL`
or `published_at IS NULL`.

Throughput: the next batch is claimed while confirms of the previous ones are outstanding
(a window of `relay_confirm_window` unconfirmed messages), and confirmed batches are marked
with one range UPDATE. The relay wakes on NOTIFY when `relay_notify` is on; otherwise (the
default, see docs/relay.md) it polls every millisecond while events keep coming, then
spaces polls out to a tenth of the idle time, up to `relay_poll_interval`. Marks use a
second connection and are coalesced, so they never hold up a claim.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from infra.eventlog.notify import NOTIFY_CHANNEL, set_notify_trigger
from infra.eventlog.verify import use_json_codecs
from infra.leadership import serve_terms
from infra.readiness import notify_ready
from producers.relay.leader import acquire_leadership
from producers.relay.publisher import publish
from producers.relay.store import ChainedEvent, RelayStore

if TYPE_CHECKING:
    from infra.amqp import ConfirmedPublisher, ConfirmStream
    from infra.app import App
    from infra.settings import Settings

log = structlog.get_logger("hisho.relay")

MIN_IDLE_WAIT = 0.001  # seconds between polls while events keep coming
IDLE_BACKOFF = 0.1  # then polls space out to a tenth of the idle time so far
MARK_COALESCE = 0.02  # seconds the marker waits so that one UPDATE marks many batches
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class _Batch:
    first: int
    last: int
    confirms: list[asyncio.Future[Any]]


_END = _Batch(0, 0, [])  # queued after the last batch of a term


class Relay:
    """Relays the outbox to RabbitMQ while `stop` is unset, as leader or standby."""

    def __init__(self, settings: Settings, publisher: ConfirmedPublisher) -> None:
        self._settings = settings
        self._publisher = publisher
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve terms until `stop` is set; any failure ends a term and starts the next one."""
        self._stop = stop
        await serve_terms(self._term, stop, name="relay")

    async def _term(self) -> None:
        """Open a confirm stream, wait for the lock (hot standby), then lead until stopped."""
        if self._stop.is_set():
            return
        window = self._settings.relay_confirm_window
        dsn = self._settings.database_dsn
        # Hot: the broker channel, the marks connection and the lock connection's codecs are
        # ready before the wait, so a takeover starts claiming at once. A stream is pinned to
        # the channel as it is now: a lost channel fails this term, never reorders it.
        stream = await self._publisher.stream(window=window, wait=CONNECT_TIMEOUT)
        marks = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
        try:
            log.info("relay.standby")
            notify_ready("relay")  # serving: as a hot standby now, as the leader soon
            connection = await acquire_leadership(dsn, self._stop, prepare=use_json_codecs)
            if connection is None:
                return
            try:
                await self._lead(connection, marks, stream)
            finally:
                connection.terminate()  # releases the lock at once
                log.info("relay.term_ended")
        finally:
            marks.terminate()

    async def _lead(
        self,
        connection: asyncpg.Connection,
        marks: asyncpg.Connection,
        stream: ConfirmStream,
    ) -> None:
        await set_notify_trigger(connection, enabled=self._settings.relay_notify)
        if self._settings.relay_notify:
            await connection.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
        store = RelayStore(connection, marks)
        batches: asyncio.Queue[_Batch] = asyncio.Queue()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._mark_confirmed(store, batches))
            try:
                await self._feed(store, stream, batches)
            finally:
                batches.put_nowait(_END)

    async def _feed(
        self,
        store: RelayStore,
        stream: ConfirmStream,
        batches: asyncio.Queue[_Batch],
    ) -> None:
        """Republish what an earlier term left unmarked, then claim and publish until stopped."""
        size = self._settings.relay_batch_size
        unmarked = await store.unmarked()
        log.info("relay.leader", republishing=len(unmarked))
        for start in range(0, len(unmarked), size):
            await self._dispatch(unmarked[start : start + size], stream, batches)
        await store.load_tail()
        busy_at = time.monotonic()
        while not self._stop.is_set():
            self._wake.clear()
            events = await store.claim(size)
            if events:
                await self._dispatch(events, stream, batches)
                busy_at = time.monotonic()
                continue
            await self._idle(time.monotonic() - busy_at)

    async def _idle(self, idle_for: float) -> None:
        """Wait for a notification, or poll again after a tenth of the time spent idle."""
        if self._settings.relay_notify:
            timeout = self._settings.relay_poll_interval
        else:
            timeout = min(
                max(MIN_IDLE_WAIT, idle_for * IDLE_BACKOFF), self._settings.relay_poll_interval
            )
        wait_stop = asyncio.ensure_future(self._stop.wait())
        wait_wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait(
                {wait_stop, wait_wake}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            wait_stop.cancel()
            wait_wake.cancel()

    @staticmethod
    async def _dispatch(
        events: list[ChainedEvent],
        stream: ConfirmStream,
        batches: asyncio.Queue[_Batch],
    ) -> None:
        confirms = [await publish(stream, event) for event in events]
        batches.put_nowait(_Batch(events[0].position, events[-1].position, confirms))

    @staticmethod
    async def _mark_confirmed(store: RelayStore, batches: asyncio.Queue[_Batch]) -> None:
        """Mark batches as the broker confirms them, merging ready neighbours into one UPDATE."""
        batch = await batches.get()
        while batch is not _END:
            await asyncio.gather(*batch.confirms)  # a nack or a lost channel raises here
            await asyncio.sleep(MARK_COALESCE)
            last, following = batch.last, None
            while following is None and not batches.empty():
                candidate = batches.get_nowait()
                if candidate is _END or not all(f.done() for f in candidate.confirms):
                    following = candidate
                else:
                    await asyncio.gather(*candidate.confirms)
                    last = candidate.last
            await store.mark(batch.first, last)
            batch = following if following is not None else await batches.get()


async def run(app: App, stop: asyncio.Event) -> None:
    """Run the relay on the process's publisher until `stop` is set (leader or hot standby)."""
    await Relay(app.settings, app.publisher).run(stop)
