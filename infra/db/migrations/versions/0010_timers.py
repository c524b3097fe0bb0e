"""Durable timers for the scheduler (issue 16): `timers` and `timer_cancellations`.

- `timers`: one row per key (due time, the command to send, the scheduling unit's causal
  context, fired time and the sent command's id, cancelled time). `timers_pending` is a
  partial index over the timers still waiting, in due order: what the scheduler scans.
- `timer_cancellations`: one row per cancelled group; it cancels the group's timers
  scheduled before it.

Revision ID: 0010_timers
Revises: 0009_principals
"""

from __future__ import annotations

from alembic import op

revision = "0010_timers"
down_revision = "0009_principals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE timers (
            key text PRIMARY KEY,
            timer_group text NOT NULL,
            due_at timestamptz NOT NULL,
            type text NOT NULL,
            version integer NOT NULL,
            data jsonb NOT NULL,
            correlation_id uuid NOT NULL,
            causation_id uuid,
            traceparent text,
            cancelled_at timestamptz,
            scheduled_at timestamptz NOT NULL DEFAULT now(),
            fired_at timestamptz,
            command_id uuid,
            problem text
        )
        """
    )
    op.execute(
        "CREATE INDEX timers_pending ON timers (due_at)"
        " WHERE fired_at IS NULL AND cancelled_at IS NULL"
    )
    op.execute(
        """
        CREATE TABLE timer_cancellations (
            seq bigserial PRIMARY KEY,
            timer_group text NOT NULL,
            causation_id uuid,
            cancelled_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX timer_cancellations_group ON timer_cancellations (timer_group, cancelled_at)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE timer_cancellations")
    op.execute("DROP TABLE timers")
