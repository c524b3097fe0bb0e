"""The people directory: mutable rows outside the immutable log (erasing one deletes it)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB

from infra.db.tables import metadata

# Contact points and preferences live only here: events carry the principal id alone.
people = Table(
    "people",
    metadata,
    Column("principal_id", Text, primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("email", Text),
    Column("chat_webhook_url", Text),
    Column("preferences", JSONB, nullable=False, server_default=text("'{}'")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
