"""The ingress's stand-in for Redis while Redis is down: idempotency records, accepted markers.

Written only when a Redis call failed; each row lives until `expires_at` (now + the same TTL
Redis would have given it), is ignored after that, and is deleted in small batches by later
fallback writes (`infra/db/ingress_fallback.py`).
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Table, Text
from sqlalchemy.dialects.postgresql import UUID

from infra.db.tables import metadata

# Command id -> the body it was claimed for and whether the broker confirmed it, as Redis's
# `hisho:ingress:idem:<command id>` = `<body sha256>:<state>`.
ingress_idempotency = Table(
    "ingress_idempotency",
    metadata,
    Column("command_id", UUID(as_uuid=True), primary_key=True),
    Column("body_sha256", Text, nullable=False),
    Column("state", Text, nullable=False),  # pending | published
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ingress_idempotency_expires", "expires_at"),
)

# A confirmed command not yet recorded by the processor, as Redis's `hisho:ingress:cmd:<id>`.
ingress_accepted = Table(
    "ingress_accepted",
    metadata,
    Column("command_id", UUID(as_uuid=True), primary_key=True),
    Column("type", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ingress_accepted_expires", "expires_at"),
)
