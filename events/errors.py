"""Typed errors raised when a message does not match its contract."""

from __future__ import annotations


class ContractError(Exception):
    """A message does not match the catalog; names the type and, where known, the field."""

    def __init__(self, message_type: str | None, field: str | None, reason: str) -> None:
        self.message_type = message_type
        self.field = field
        self.reason = reason
        where = message_type or "<no type>"
        if field:
            where = f"{where}.{field}"
        super().__init__(f"{where}: {reason}")


class UnknownMessageTypeError(ContractError):
    """The `type` is not in the catalog."""

    def __init__(self, message_type: str) -> None:
        super().__init__(message_type, "type", "unknown message type")


class UnknownSchemaVersionError(ContractError):
    """The `version` is newer than the catalog knows, or has no upcaster path."""

    def __init__(self, message_type: str, version: int) -> None:
        self.version = version
        super().__init__(message_type, "version", f"unknown schema version {version}")


class InvalidMessageError(ContractError):
    """A field is missing, extra, or of the wrong type."""
