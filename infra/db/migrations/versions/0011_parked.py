"""Parked messages: the console's record of every message a consumer parked.

One row per (consumer, message id), written by the consumer framework when it parks a
message (before the parked copy goes to `hisho.dead`), with the body, headers, error type,
reason and where a re-drive sends it; `state` moves from `parked` to `redriven` or
`discarded` through the parked-message console (`hisho parked`, `/v1/parked`).

Revision ID: 0011_parked
Revises: 0010_timers
"""

from __future__ import annotations

from alembic import op

revision = "0011_parked"
down_revision = "0010_timers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE parked_messages (
            consumer text NOT NULL,
            message_id text NOT NULL,
            routing_key text NOT NULL,
            message_type text,
            error_type text NOT NULL,
            reason text NOT NULL,
            parked_at timestamptz NOT NULL,
            body bytea NOT NULL,
            headers jsonb NOT NULL DEFAULT '{}',
            redrive_exchange text NOT NULL,
            redrive_routing_key text NOT NULL,
            parking_queue text NOT NULL,
            state text NOT NULL DEFAULT 'parked',
            resolved_at timestamptz,
            resolved_by text,
            CONSTRAINT parked_messages_pkey PRIMARY KEY (consumer, message_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX parked_messages_listing"
        " ON parked_messages (state, parked_at, consumer, message_id)"
    )
    op.execute(
        "CREATE INDEX parked_messages_errors ON parked_messages (state, consumer, error_type)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE parked_messages")
