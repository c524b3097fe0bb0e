"""External effects of consumers: claimed before, recorded after (`infra.consumers.effects`).

One row per (consumer, message): `attempts` counts the claims (2 or more: an earlier attempt
may have performed the effect before it could record it), `state` is `started` until the
unit that records the outcome commits (`done`, with the outcome).

Revision ID: 0008_consumer_effects
Revises: 0007_consumer_held
"""

from __future__ import annotations

from alembic import op

revision = "0008_consumer_effects"
down_revision = "0007_consumer_held"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE consumer_effects (
            consumer text NOT NULL,
            message_id uuid NOT NULL,
            attempts integer NOT NULL DEFAULT 1,
            state text NOT NULL,
            outcome jsonb,
            claimed_at timestamptz NOT NULL DEFAULT now(),
            done_at timestamptz,
            CONSTRAINT consumer_effects_pkey PRIMARY KEY (consumer, message_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE consumer_effects")
