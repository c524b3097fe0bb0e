"""The people's notification list: in-app notifications and every channel's failures.

One row per notification id (`infra.db.notification_tables`), written by the
notification-delivery consumer; `read_at` is set and cleared by the recipient.

Revision ID: 0012_notifications
Revises: 0011_parked
"""

from __future__ import annotations

from alembic import op

revision = "0012_notifications"
down_revision = "0011_parked"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE notifications (
            notification_id uuid NOT NULL,
            recipient text NOT NULL,
            channel text NOT NULL,
            priority text NOT NULL,
            subject text NOT NULL,
            body text NOT NULL,
            status text NOT NULL,
            error text,
            created_at timestamptz NOT NULL,
            read_at timestamptz,
            CONSTRAINT notifications_pkey PRIMARY KEY (notification_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX notifications_recipient"
        " ON notifications (recipient, created_at, notification_id)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE notifications")
