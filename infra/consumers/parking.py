"""The record of a parked message, written by the framework for every consumer that parks.

`Runner.parking` adds `parked_row(...)` to the unit that records a parking (with the
consumer's `on_park`, if it has one), before the parked copy is published to `hisho.dead`:
a message is never in the parking queue without its row, and a parking that cannot be
recorded is not carried out (the message waits in a delay queue or goes back to its queue).
A message parked again replaces its row (`parked` again). The parked-message console
(`infra.parked`) reads the rows; see docs/parked.md.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from events import ContractError, catalog
from infra.consumers.held import storable_headers
from infra.consumers.runtime import (
    ORIGINAL_ROUTING_KEY_HEADER,
    PARKED_AT_HEADER,
    PARKED_CONSUMER_HEADER,
    PARKED_ERROR_HEADER,
    PARKED_REASON_HEADER,
)
from infra.db.parked_tables import PARKED
from infra.partitions import PartitionedQueues

if TYPE_CHECKING:
    from collections.abc import Mapping

    from infra.consumers.declaration import Consumer, Parked

_MAX_ID = 200


def storable_text(text: str) -> str:
    """`text` as PostgreSQL stores it: NUL and lone surrogates escaped."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def parked_id(message_id: str | None, body: bytes) -> str:
    """The id a parked message is known by: its AMQP message id, else its envelope's id.

    A message with neither (or an id PostgreSQL cannot store) is named by its body's hash.
    """
    if message_id and len(message_id) <= _MAX_ID and storable_text(message_id) == message_id:
        return message_id
    try:
        return str(catalog.decode(body).id)
    except ContractError:
        return f"sha256:{hashlib.sha256(body).hexdigest()}"


def _message_type(body: bytes) -> str | None:
    try:
        return catalog.decode(body).type
    except ContractError:
        return None


def _routing_key(body: bytes, headers: Mapping[str, Any], routing_key: str | None) -> str:
    """The routing key it was published with: the catalog's, or the one it came with."""
    message_type = _message_type(body)
    if message_type is not None:
        return catalog.entry(message_type).routing_key
    original = headers.get(ORIGINAL_ROUTING_KEY_HEADER)
    return storable_text(original if isinstance(original, str) else routing_key or "")


def _redrive_target(consumer: Consumer) -> tuple[str, str, str]:
    """(exchange, routing key, parking queue): a re-drive reaches this consumer alone."""
    spec = consumer.queue_spec()
    if isinstance(spec, PartitionedQueues):
        return spec.exchange, "", spec.parked
    return "", spec.queue, spec.parked


def parked_row(consumer: Consumer, parked: Parked, headers: Mapping[str, Any]) -> tuple[Any, ...]:
    """The `parked_messages` row of a message about to be parked (`PARKED_MESSAGES.written`)."""
    body, settlement, at = parked.body, parked.settlement, datetime.now(UTC)
    stamped = {
        **headers,
        PARKED_REASON_HEADER: settlement.reason,
        PARKED_ERROR_HEADER: settlement.error,
        PARKED_CONSUMER_HEADER: consumer.name,
        PARKED_AT_HEADER: at.isoformat(),
    }
    kept = {
        storable_text(name): storable_text(value) if isinstance(value, str) else value
        for name, value in storable_headers(stamped).items()
    }
    exchange, key, queue = _redrive_target(consumer)
    message_type = _message_type(body)
    return (
        consumer.name,
        parked_id(parked.message_id, body),
        _routing_key(body, headers, parked.routing_key),
        message_type,
        storable_text(settlement.error),
        storable_text(settlement.reason),
        at,
        body,
        json.dumps(kept),
        exchange,
        key,
        queue,
        PARKED,
        None,
        None,
    )
