r"""The event log's hash chain: the canonical bytes of an envelope and the link between events.

Every positioned event carries `prev_hash` and `hash`, where

    hash = SHA-256(prev_hash || canonical_bytes(envelope with its position))

and the first event (position 1) has `prev_hash` = GENESIS (32 zero bytes). Changing a
payload, deleting an event or reordering two of them breaks the chain at the first position
touched; `infra.eventlog.verify` finds it.

The canonical form is STABLE: changing it invalidates every stored chain. It is the UTF-8
encoding of one JSON object that holds exactly these envelope fields, absent values as
`null`:

    actor, aggregate_id, aggregate_type, aggregate_version, causation_id, correlation_id,
    data, id, occurred_at, position, traceparent, type, version

- keys sorted by code point at every depth (inside `data` and `actor` too);
- no insignificant whitespace (separators `,` and `:`); non-ASCII characters written as
  themselves (UTF-8), not as `\u` escapes;
- UUIDs as lowercase hyphenated strings;
- `occurred_at` as ISO-8601 in UTC with exactly six fractional digits and `Z`
  (`2025-01-31T09:15:00.000000Z`);
- integers as plain decimal digits; other numbers in their shortest round-trip form
  (the values PostgreSQL stores in JSONB, read back, always give the same bytes).

The canonical bytes are also the AMQP body the relay publishes, so a consumer holding the
previous hash can check a message's link itself.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

GENESIS = bytes(32)
HASH_SIZE = 32

# The envelope fields in the canonical form, besides `position` (given separately).
ENVELOPE_FIELDS = (
    "id",
    "type",
    "version",
    "occurred_at",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "correlation_id",
    "causation_id",
    "actor",
    "traceparent",
    "data",
)
_UUID_FIELDS = ("id", "aggregate_id", "correlation_id", "causation_id")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


class EnvelopeFields(Protocol):
    """Anything that gives the envelope fields by name: a dict, a database record."""

    def __getitem__(self, key: str, /) -> Any:  # noqa: ANN401  (JSON values of any shape)
        """The value of one field."""
        ...


_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


def utc_timestamp(moment: datetime) -> str:
    """A timestamp in the canonical form: ISO-8601 UTC, microseconds, `Z`."""
    if moment.tzinfo is None:
        raise ValueError("canonical timestamps need an aware datetime")
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return text.removesuffix("+00:00") + "Z"  # four-digit year even before 1000


def canonical_document(fields: EnvelopeFields, position: int) -> dict[str, Any]:
    """The JSON object the canonical bytes encode; `fields` holds every ENVELOPE_FIELDS key."""
    doc = {name: fields[name] for name in ENVELOPE_FIELDS}
    for name in _UUID_FIELDS:
        value = doc[name]
        if value is not None and not (type(value) is str and _CANONICAL_UUID.match(value)):
            doc[name] = str(value if isinstance(value, UUID) else UUID(str(value)))
    doc["occurred_at"] = utc_timestamp(doc["occurred_at"])
    doc["position"] = position
    return doc


def canonical_bytes(fields: EnvelopeFields, position: int) -> bytes:
    """The canonical bytes of an envelope at `position` (see the module docstring)."""
    return _encoder.encode(canonical_document(fields, position)).encode()


def link_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    """The chain link: SHA-256 over the previous hash followed by the canonical bytes."""
    if len(prev_hash) != HASH_SIZE:
        raise ValueError(f"prev_hash must be {HASH_SIZE} bytes, got {len(prev_hash)}")
    digest = hashlib.sha256(prev_hash)
    digest.update(canonical)
    return digest.digest()
