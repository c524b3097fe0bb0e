"""Message contracts: importing this package fills the catalog with every type."""

from events import (  # noqa: F401  (register their types)
    approval,
    notification,
    parked,
    person,
    persona,
    plan,
    project,
    task,
    workflow,
)
from events.base import Actor, ActorKind, Command, DomainEvent, Message
from events.catalog import Catalog, CatalogEntry, catalog
from events.envelope import Envelope
from events.errors import (
    ContractError,
    InvalidMessageError,
    UnknownMessageTypeError,
    UnknownSchemaVersionError,
)

__all__ = [
    "Actor",
    "ActorKind",
    "Catalog",
    "CatalogEntry",
    "Command",
    "ContractError",
    "DomainEvent",
    "Envelope",
    "InvalidMessageError",
    "Message",
    "UnknownMessageTypeError",
    "UnknownSchemaVersionError",
    "catalog",
]
