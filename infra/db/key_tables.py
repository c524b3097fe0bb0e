"""API keys (hashed, with scopes); read by the ingress, written by `hisho keys`."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, LargeBinary, Table, Text, func
from sqlalchemy.dialects.postgresql import ARRAY

from infra.db.tables import metadata

# Only a SHA-256 of the high-entropy secret is stored; `id` is the public prefix of the key
# and is how a presented key is found. A revoked key keeps its row (audit), with `revoked_at`.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False, server_default=""),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
)

# JWT ids refused until they expire (`hisho tokens revoke`); Redis keeps a copy for the hot path.
revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", Text, primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("revoked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
