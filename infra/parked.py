"""The parked-message console: list, show, re-drive and discard what consumers parked.

One set of operations for `hisho parked` and `/v1/parked`. PostgreSQL (`parked_messages`,
written by the framework when it parks) is the source of truth: what is listed, its state,
and the body and headers a re-drive sends. The copy in the broker's parking queue
(`hisho.<consumer>.parked`) is removed when the message is re-driven or discarded (and any
stale copy of a record no longer parked with it), so `infra.consumers.redrive` never sends
it a second time.

A re-drive sends the recorded message to its consumer alone, with its id: first the parking
copies are taken away, then it is published (confirmed), then the record is marked
`redriven` — unless the message was parked again meanwhile (the mark names the `parked_at`
it read). A message the consumer's inbox already holds is not sent again: the record is
only marked. A crash in between leaves the record `parked`, to re-drive again: the inbox
makes that one effect. A discard marks the record and appends `ParkedMessageDiscarded` to
the audit log in one transaction (`infra.db.parked`). See docs/parked.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from events import ContractError, catalog
from infra.clock import Clock, utc_now
from infra.consumers.parking import storable_text
from infra.db.parked import ErrorGroup, ParkedFilter, ParkedRecord
from infra.db.parked_tables import PARKED, STATES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from infra.db.parked import Cursor, SqlParkedMessages
    from infra.message_context import MessageContext

MAX_PAGE = 200
MAX_BULK = 10_000
MAX_RATE = 1_000.0  # messages per second
_AGE = re.compile(r"^([0-9]{1,6})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_MAX_AGE = timedelta(days=36_500)
_MAX_TEXT = 200


class ParkedInputError(ValueError):
    """Malformed input (a filter, a cursor, a rate): nothing was read or changed."""


class ParkedNotFoundError(LookupError):
    """No parked message with this id (for this consumer)."""


class NotParkedError(Exception):
    """The message is recorded, but no longer parked (re-driven or discarded), or ambiguous."""

    def __init__(self, detail: str, record: ParkedRecord | None = None) -> None:
        super().__init__(detail)
        self.record = record


class ParkedBroker(Protocol):
    """What the console needs of the broker (`infra.parked_broker.AmqpParkedBroker`)."""

    async def send(self, record: ParkedRecord) -> None:
        """Publish the record's message back to its consumer (confirmed)."""
        ...

    async def take(self, queue: str, choose: Callable[[list[str]], Awaitable[set[str]]]) -> int:
        """Remove the copies of `queue` that `choose` picks; how many went."""
        ...


@dataclass(frozen=True)
class ParkedPage:
    """A page of records in parking order, the next page's cursor, counts by error type."""

    items: list[ParkedRecord]
    next_cursor: str | None
    groups: list[ErrorGroup]


@dataclass(frozen=True)
class BulkRedrive:
    """What a bulk re-drive selected and did (nothing but `selected` on a dry run)."""

    selected: list[ParkedRecord]
    sent: int
    already_applied: int
    dry_run: bool


def parse_age(text: str, *, option: str) -> timedelta:
    """`30s`, `15m`, `2h`, `7d`, `1w` as a duration; anything else is `ParkedInputError`."""
    match = _AGE.match(text)
    if match is None:
        raise ParkedInputError(f"{option} must look like 30s, 15m, 2h, 7d or 1w, not {text!r}")
    age = timedelta(**{_UNITS[match[2]]: int(match[1])})
    if age > _MAX_AGE:
        raise ParkedInputError(f"{option} must be at most 100 years")
    return age


def checked_text(value: str | None, *, what: str) -> str | None:
    """`value` if PostgreSQL can take it as a short key (no NUL, Unicode, 200 characters)."""
    if value is not None and (len(value) > _MAX_TEXT or storable_text(value) != value):
        raise ParkedInputError(f"{what} must be at most {_MAX_TEXT} characters of text")
    return value


def encode_cursor(record: ParkedRecord) -> str:
    """The cursor after `record`: opaque text."""
    key = [record.parked_at.isoformat(), record.consumer, record.message_id]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """A cursor `encode_cursor` made, or `ParkedInputError`."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        at, consumer, message_id = json.loads(raw)
        parked_at = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ParkedInputError("cursor is not a cursor this console gave") from None
    if not (isinstance(consumer, str) and isinstance(message_id, str)) or parked_at.tzinfo is None:
        raise ParkedInputError("cursor is not a cursor this console gave")
    return parked_at, consumer, message_id


def decoded_body(record: ParkedRecord) -> dict[str, Any] | None:
    """The body as its envelope (JSON), when it decodes through the catalog; else None."""
    try:
        envelope = catalog.decode(record.body or b"")
    except ContractError:
        return None
    shown: dict[str, Any] = envelope.model_dump(mode="json")
    return shown


class ParkedConsole:
    """The console's operations on the records (`store`) and the broker."""

    def __init__(
        self,
        store: SqlParkedMessages,
        broker: ParkedBroker,
        *,
        consumers: Iterable[str] = (),
        clock: Clock = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.broker = broker
        self.registered = frozenset(consumers)
        self.clock = clock
        self._sleep = sleep
        self._monotonic = monotonic

    async def filter(
        self,
        *,
        consumer: str | None = None,
        error_type: str | None = None,
        older_than: str | None = None,
        younger_than: str | None = None,
        state: str | None = PARKED,
    ) -> ParkedFilter:
        """A checked filter: ages parsed, the state and the consumer known."""
        checked_text(consumer, what="consumer")
        checked_text(error_type, what="error type")
        if state is not None and state not in STATES:
            raise ParkedInputError(f"state must be one of {', '.join(STATES)}, not {state!r}")
        now = self.clock()
        before = None if older_than is None else now - parse_age(older_than, option="older-than")
        after = (
            None if younger_than is None else now - parse_age(younger_than, option="younger-than")
        )
        if consumer is not None and not await self._known(consumer):
            raise ParkedInputError(f"no consumer {consumer!r} (registered or with records)")
        return ParkedFilter(consumer, error_type, state, before, after)

    async def list(
        self, which: ParkedFilter, *, cursor: str | None = None, limit: int = 50
    ) -> ParkedPage:
        """A page of the records of `which`, and their counts by error type."""
        if not 1 <= limit <= MAX_PAGE:
            raise ParkedInputError(f"limit must be between 1 and {MAX_PAGE}")
        after = None if cursor is None else decode_cursor(cursor)
        rows = await self.store.page(which, after=after, limit=limit + 1)
        items = rows[:limit]
        next_cursor = encode_cursor(items[-1]) if len(rows) > limit else None
        return ParkedPage(items, next_cursor, await self.store.groups(which))

    async def show(self, message_id: str, *, consumer: str | None = None) -> ParkedRecord:
        """One record, with body and headers (`consumer` names it if several consumers did)."""
        checked_text(message_id, what="message id")
        checked_text(consumer, what="consumer")
        records = [
            record
            for record in await self.store.get(message_id)
            if consumer is None or record.consumer == consumer
        ]
        if not records:
            whose = "" if consumer is None else f" for consumer {consumer!r}"
            raise ParkedNotFoundError(f"no parked message {message_id!r}{whose}")
        if len(records) > 1:
            names = ", ".join(sorted(record.consumer for record in records))
            raise NotParkedError(f"{message_id!r} was parked by {names}: name the consumer")
        return records[0]

    async def redrive(
        self, message_id: str, *, by: str, consumer: str | None = None, dry_run: bool = False
    ) -> BulkRedrive:
        """Send one parked message back to its consumer (not if it was applied already)."""
        record = await self._parked(message_id, consumer)
        if dry_run:
            return BulkRedrive([record], 0, 0, dry_run=True)
        await self._take_copies(record.consumer, record.parking_queue, {record.message_id})
        sent = await self._redrive(record, by=by)
        return BulkRedrive([record], int(sent), int(not sent), dry_run=False)

    async def redrive_all(
        self,
        which: ParkedFilter,
        *,
        by: str,
        rate: float = 10.0,
        limit: int = 1_000,
        dry_run: bool = False,
    ) -> BulkRedrive:
        """Re-drive the parked records of `which` (at most `limit`), `rate` messages/s at most."""
        if not 0 < rate <= MAX_RATE:
            raise ParkedInputError(f"rate must be above 0 and at most {MAX_RATE:g} messages/s")
        if not 1 <= limit <= MAX_BULK:
            raise ParkedInputError(f"limit must be between 1 and {MAX_BULK}")
        selected = await self.store.full(replace(which, state=PARKED), limit=limit)
        if dry_run:
            return BulkRedrive(selected, 0, 0, dry_run=True)
        by_queue: dict[tuple[str, str], set[str]] = {}
        for record in selected:
            by_queue.setdefault((record.consumer, record.parking_queue), set()).add(
                record.message_id
            )
        for (name, queue), ids in by_queue.items():
            await self._take_copies(name, queue, ids)
        sent = applied = 0
        start = self._monotonic()
        for n, record in enumerate(selected):
            await self._sleep(max(0.0, start + n / rate - self._monotonic()))
            if await self._redrive(record, by=by):
                sent += 1
            else:
                applied += 1
        return BulkRedrive(selected, sent, applied, dry_run=False)

    async def discard(
        self,
        message_id: str,
        *,
        reason: str,
        context: MessageContext,
        consumer: str | None = None,
    ) -> ParkedRecord:
        """Discard one parked message (recorded in the audit log); the record as it was."""
        reason = reason.strip() or "discarded by an operator"
        record = await self._parked(message_id, consumer)
        if not await self.store.discard(record, reason=reason, context=context, clock=self.clock):
            raise NotParkedError(f"{message_id!r} is no longer parked", record)
        await self._take_copies(record.consumer, record.parking_queue, {record.message_id})
        return record

    async def _known(self, consumer: str) -> bool:
        return consumer in self.registered or consumer in await self.store.consumers()

    async def _parked(self, message_id: str, consumer: str | None) -> ParkedRecord:
        record = await self.show(message_id, consumer=consumer)
        if record.state != PARKED:
            raise NotParkedError(f"{message_id!r} is {record.state}, no longer parked", record)
        return record

    async def _redrive(self, record: ParkedRecord, *, by: str) -> bool:
        """Send it unless its consumer applied it already; mark it. Whether it was sent."""
        applied = await self.store.applied(record.consumer, record.message_id)
        if not applied:
            await self.broker.send(record)
        await self.store.mark_redriven(record, by=by)
        return not applied

    async def _take_copies(self, consumer: str, queue: str, ids: set[str]) -> int:
        """Remove the parking copies of `ids`, and stale ones (records no longer parked)."""

        async def choose(found: list[str]) -> set[str]:
            states = await self.store.states(consumer, sorted(set(found) - ids))
            return ids | {message_id for message_id, state in states.items() if state != PARKED}

        return await self.broker.take(queue, choose)
