"""Held messages of ordered consumers, and the commit guard that respects them.

`consumer_held` keeps, per consumer and partition, the messages held back in arrival order
(`seq`): a parked one, and the later ones of its partition waiting behind it. A unit of
work's commit (infra.db.statement) calls `hisho_expect_unheld` with the first row held
before its own message (if any): it raises SQLSTATE `HS423` naming that blocker, so nothing
of the statement is kept.

Revision ID: 0007_consumer_held
Revises: 0006_ingress_fallback
"""

from __future__ import annotations

from alembic import op

revision = "0007_consumer_held"
down_revision = "0006_ingress_fallback"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE consumer_held (
            consumer text NOT NULL,
            partition_key text NOT NULL,
            seq bigserial NOT NULL,
            message_id uuid NOT NULL,
            parked boolean NOT NULL,
            reason text NOT NULL,
            body bytea NOT NULL,
            headers jsonb NOT NULL DEFAULT '{}',
            held_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT consumer_held_pkey PRIMARY KEY (consumer, partition_key, seq),
            CONSTRAINT consumer_held_consumer_message_id_key UNIQUE (consumer, message_id)
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION hisho_expect_unheld(blocker uuid) RETURNS uuid
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            IF blocker IS NOT NULL THEN
                RAISE EXCEPTION 'held: blocked by %', blocker
                    USING ERRCODE = 'HS423', DETAIL = blocker::text,
                          HINT = 'an earlier message of the partition is held; wait for it';
            END IF;
            RETURN blocker;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION hisho_expect_unheld(uuid)")
    op.execute("DROP TABLE consumer_held")
