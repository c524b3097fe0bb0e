"""Old schema versions are upcast on read, through a private catalog with made-up types."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from events import Catalog, DomainEvent, UnknownSchemaVersionError
from events.upcasters import Payload, Upcasters


class ThingRenamed(DomainEvent):
    """Test-only event at version 2: v1 called `title` `name` and had no `language`."""

    thing_id: UUID
    title: str
    language: str


def _private_catalog() -> Catalog:
    chain = Upcasters()

    @chain.register("ThingRenamed", from_version=1)
    def _name_becomes_title(payload: Payload) -> Payload:
        rest = {k: v for k, v in payload.items() if k != "name"}
        return {**rest, "title": payload["name"], "language": "en"}

    private = Catalog(chain)
    private.add(ThingRenamed, version=2, routing_key="thing.renamed")
    return private


def _wire(version: int, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(uuid4()),
        "type": "ThingRenamed",
        "version": version,
        "occurred_at": "2026-01-02T03:04:05+00:00",
        "correlation_id": str(uuid4()),
        "actor": {"kind": "system", "id": "test"},
        "data": data,
    }


def test_version_one_payload_is_upcast_to_the_current_version() -> None:
    thing_id = uuid4()
    envelope = _private_catalog().decode(_wire(1, {"thing_id": str(thing_id), "name": "Kettle"}))
    assert envelope.version == 2
    assert envelope.data == ThingRenamed(thing_id=thing_id, title="Kettle", language="en")


def test_current_version_payload_is_read_as_is() -> None:
    data = {"thing_id": str(uuid4()), "title": "Kettle", "language": "ja"}
    envelope = _private_catalog().decode(_wire(2, data))
    assert envelope.data.model_dump(mode="json") == data


def test_missing_upcaster_step_is_an_unknown_version() -> None:
    private = Catalog(Upcasters())
    private.add(ThingRenamed, version=2, routing_key="thing.renamed")
    with pytest.raises(UnknownSchemaVersionError) as caught:
        private.decode(_wire(1, {"thing_id": str(uuid4()), "name": "Kettle"}))
    assert caught.value.version == 1


def test_upcaster_registered_twice_is_refused() -> None:
    chain = Upcasters()
    chain.register("ThingRenamed", from_version=1)(dict)
    with pytest.raises(ValueError, match="twice"):
        chain.register("ThingRenamed", from_version=1)(dict)


def test_private_catalog_leaves_the_global_one_alone() -> None:
    from events import catalog  # noqa: PLC0415

    _private_catalog()
    assert "ThingRenamed" not in {entry.type for entry in catalog.entries()}
