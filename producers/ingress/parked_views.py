"""The documents of `/v1/parked` (producers.ingress.parked): records as the API shows them."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from infra.parked import decoded_body

if TYPE_CHECKING:
    from infra.db.parked import ErrorGroup, ParkedRecord

CONSUMER_PATTERN = r"^[a-z][a-z0-9_]{0,99}$"
ERROR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]{0,199}$"
AGE_PATTERN = r"^[0-9]{1,6}[smhdw]$"


class ParkedSummary(BaseModel):
    """One parked message as listed."""

    message_id: str
    consumer: str
    routing_key: str
    message_type: str | None
    error_type: str
    reason: str
    parked_at: datetime
    state: Literal["parked", "redriven", "discarded"]
    resolved_at: datetime | None
    resolved_by: str | None


class ParkedBody(BaseModel):
    """A parked body: its envelope when it decodes, else its text (UTF-8), always base64."""

    envelope: dict[str, Any] | None
    text: str | None
    base64: str
    size: int


class ParkedDetail(ParkedSummary):
    """One parked message with its headers and body."""

    headers: dict[str, Any]
    body: ParkedBody


class ErrorGroupView(BaseModel):
    """The parked messages of one error type."""

    error_type: str
    count: int
    consumers: list[str]
    oldest: datetime
    newest: datetime


class ParkedList(BaseModel):
    """A page of parked messages in parking order; `next_cursor` for more; grouped counts."""

    items: list[ParkedSummary]
    next_cursor: str | None
    groups: list[ErrorGroupView]


class BulkRedriveRequest(BaseModel):
    """Which parked messages to re-drive, and how fast."""

    model_config = ConfigDict(extra="forbid")

    consumer: Annotated[str | None, Field(pattern=CONSUMER_PATTERN)] = None
    error_type: Annotated[str | None, Field(pattern=ERROR_PATTERN)] = None
    older_than: Annotated[str | None, Field(pattern=AGE_PATTERN)] = None
    younger_than: Annotated[str | None, Field(pattern=AGE_PATTERN)] = None
    rate: Annotated[float, Field(gt=0, le=1000, description="Messages per second, at most")] = 10
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    dry_run: bool = False


class RedriveResult(BaseModel):
    """What a re-drive selected and did."""

    dry_run: bool
    selected: list[str]
    sent: int
    already_applied: int


def summary(record: ParkedRecord) -> dict[str, Any]:
    """The fields of `ParkedSummary`, from a record."""
    return {name: getattr(record, name) for name in ParkedSummary.model_fields}


def detail(record: ParkedRecord) -> ParkedDetail:
    """A record with its headers and body (decoded when it is an envelope)."""
    body = record.body or b""
    envelope = decoded_body(record)
    try:
        text = None if envelope is not None else body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    shown = ParkedBody(
        envelope=envelope, text=text, base64=base64.b64encode(body).decode(), size=len(body)
    )
    return ParkedDetail(**summary(record), headers=dict(record.headers or {}), body=shown)


def group_view(group: ErrorGroup) -> ErrorGroupView:
    """One error type's counts."""
    return ErrorGroupView(
        error_type=group.error_type,
        count=group.count,
        consumers=list(group.consumers),
        oldest=group.oldest,
        newest=group.newest,
    )
