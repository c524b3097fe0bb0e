"""The catalog: the only place that maps a type name to its model, version and routing key."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from events.base import Command, DomainEvent, Message
from events.envelope import Envelope
from events.errors import (
    InvalidMessageError,
    UnknownMessageTypeError,
    UnknownSchemaVersionError,
)
from events.upcasters import Upcasters, upcasters

if TYPE_CHECKING:
    import builtins

_EVENT_KEY = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class CatalogEntry:
    """One message type as the catalog knows it."""

    type: str
    model: builtins.type[Message]  # `type` is a field name here
    version: int
    routing_key: str
    kind: Literal["command", "event"]
    system_only: bool = False  # a command only hisho's components send (never over HTTP)

    @property
    def public(self) -> bool:
        """Whether callers may send it: a command that is not system-only."""
        return self.kind == "command" and not self.system_only

    @property
    def aggregate(self) -> str:
        """The aggregate an event belongs to: the first part of its routing key."""
        return self.routing_key.split(".", 1)[0] if self.kind == "event" else ""


class Catalog:
    """Registry of every command and event type."""

    def __init__(self, upcaster_chain: Upcasters) -> None:
        self._entries: dict[str, CatalogEntry] = {}
        self._routing_keys: set[str] = set()
        self.upcasters = upcaster_chain

    def add(
        self,
        model: type[Message],
        *,
        version: int,
        routing_key: str | None = None,
        system_only: bool = False,
    ) -> CatalogEntry:
        """Register a model; commands route by their type name, events by `aggregate.verbed`.

        A `system_only` command is sent by hisho's own components alone (through the outbox,
        as a `system:` principal): the ingress does not offer it, the processor refuses it
        from anyone else.
        """
        name = model.__name__
        if issubclass(model, Command):
            kind: Literal["command", "event"] = "command"
            key = routing_key or name
            _require_target_first(model)
        elif issubclass(model, DomainEvent):
            kind = "event"
            if routing_key is None or not _EVENT_KEY.match(routing_key):
                raise ValueError(f"{name}: events need a routing key like 'plan.submitted'")
            key = routing_key
            if system_only:
                raise ValueError(f"{name}: only commands are system-only")
        else:
            raise TypeError(f"{name} is neither a Command nor a DomainEvent")
        if name in self._entries:
            raise ValueError(f"{name} registered twice")
        if key in self._routing_keys:
            raise ValueError(f"{name}: routing key {key!r} already taken")
        entry = CatalogEntry(
            type=name,
            model=model,
            version=version,
            routing_key=key,
            kind=kind,
            system_only=system_only,
        )
        self._entries[name] = entry
        self._routing_keys.add(key)
        return entry

    def entry(self, message_type: str) -> CatalogEntry:
        """The entry for a type name, or `UnknownMessageTypeError`."""
        try:
            return self._entries[message_type]
        except KeyError:
            raise UnknownMessageTypeError(message_type) from None

    def entry_for(self, message: Message | type[Message]) -> CatalogEntry:
        """The entry for a model class or instance."""
        cls = message if isinstance(message, type) else type(message)
        return self.entry(cls.__name__)

    def entries(self) -> list[CatalogEntry]:
        """Every entry, commands first, each group sorted by type name."""
        return sorted(self._entries.values(), key=lambda e: (e.kind != "command", e.type))

    def parse_data(self, message_type: str, version: int, data: Any) -> Message:  # noqa: ANN401
        """Validate a payload of `message_type` at `version`, upcasting it to the current one."""
        entry = self.entry(message_type)
        if not isinstance(data, dict):
            raise InvalidMessageError(message_type, "data", "payload must be a JSON object")
        if version > entry.version or version < 1:
            raise UnknownSchemaVersionError(message_type, version)
        while version < entry.version:
            if not self.upcasters.has(message_type, version):
                raise UnknownSchemaVersionError(message_type, version)
            data = self.upcasters.step(message_type, version, data)
            version += 1
        try:
            return entry.model.model_validate(data)
        except ValidationError as exc:
            raise _invalid(message_type, exc, prefix="") from exc

    def decode(self, raw: bytes | str | dict[str, Any]) -> Envelope[Message]:
        """Turn a wire envelope (JSON) into a typed `Envelope`; raises a `ContractError`."""
        doc = _load(raw)
        message_type = doc.get("type")
        if not isinstance(message_type, str):
            raise InvalidMessageError(None, "type", "missing or not a string")
        version = doc.get("version", self.entry(message_type).version)
        if not isinstance(version, int):
            raise InvalidMessageError(message_type, "version", "must be an integer")
        data = self.parse_data(message_type, version, doc.get("data"))
        entry = self.entry(message_type)
        try:
            return Envelope[Message].model_validate({**doc, "version": entry.version, "data": data})
        except ValidationError as exc:
            raise _invalid(message_type, exc, prefix="") from exc

    @staticmethod
    def encode(envelope: Envelope[Message]) -> bytes:
        """The wire form of an envelope: compact JSON."""
        return envelope.model_dump_json().encode()


def target_id(command: Command) -> uuid.UUID:
    """The id of the aggregate a command targets: its first field (checked at registration)."""
    value = getattr(command, next(iter(type(command).model_fields)))
    if not isinstance(value, uuid.UUID):  # pragma: no cover  (registration checks the type)
        raise TypeError(f"{type(command).__name__}: first field is not the target's id")
    return value


def partition_key(envelope: Envelope[Message]) -> str:
    """What orders a message: its aggregate's id (an event) or its target's id (a command).

    Messages with one key are handled in order by ordered consumers (`infra.partitions`).
    """
    if isinstance(envelope.data, Command):
        return str(target_id(envelope.data))
    return str(envelope.aggregate_id or envelope.id)


def stored_partition_key(
    message_type: str, aggregate_id: str | None, data: dict[str, Any], message_id: str
) -> str:
    """`partition_key` of a stored message (an outbox row: ids as text, data as JSON).

    It never fails, so no stored row can stop whoever routes it (the relay): a type this build
    does not know (a newer producer's), or a command whose target cannot be read, is keyed as
    an event is, by its aggregate, else its own id.
    """
    try:
        entry = catalog.entry(message_type)
        if entry.kind == "command":
            return str(uuid.UUID(str(data[next(iter(entry.model.model_fields))])))
    except (UnknownMessageTypeError, LookupError, ValueError, TypeError):
        pass
    return aggregate_id or message_id


def _require_target_first(model: type[Message]) -> None:
    first = next(iter(model.model_fields.items()), None)
    if first is None or not first[0].endswith("_id") or first[1].annotation is not uuid.UUID:
        raise TypeError(f"{model.__name__}: a command's first field is its target's `…_id: UUID`")


def _load(raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessageError(None, None, f"body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidMessageError(None, None, "envelope must be a JSON object")
    return doc


def _invalid(message_type: str, exc: ValidationError, *, prefix: str) -> InvalidMessageError:
    first = exc.errors()[0]
    field = prefix + ".".join(str(part) for part in first["loc"])
    return InvalidMessageError(message_type, field or None, first["msg"])


catalog = Catalog(upcasters)
