"""Principals, people, token revocation, and the log's kind and project columns (issue 15).

- `outbox.kind` (`event` | `command`) and `outbox.project_id`: written with every row from
  the envelope (the catalog's kind; the payload's `project_id`), filled here for the rows
  already there. They sit beside the hash chain, which covers the envelope only.
- `people`: the directory of persons (mutable, outside the immutable log; erasing deletes).
- `revoked_tokens`: JWT ids refused until they expire (Redis holds a copy for the hot path).
- Stored aggregate state: principals written before principal ids were namespaced
  (`alice`) become `legacy:alice`, as the v1 → v2 upcasters read them in old events.

Revision ID: 0009_principals
Revises: 0008_consumer_effects
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009_principals"
down_revision = "0008_consumer_effects"
branch_labels = None
depends_on = None

_NAMESPACED = re.compile(r"^(key|user|persona|system|legacy):")
_PRINCIPAL_LISTS = ("approvers", "approvals")
_PRINCIPAL_VALUES = ("rejected_by", "assignee", "worker")


def upgrade() -> None:
    op.execute("ALTER TABLE outbox ADD COLUMN kind text NOT NULL DEFAULT 'event'")
    op.execute("ALTER TABLE outbox ADD COLUMN project_id uuid")
    op.execute("UPDATE outbox SET kind = 'command' WHERE exchange = 'hisho.commands'")
    op.execute(
        "UPDATE outbox SET project_id = (data ->> 'project_id')::uuid"
        " WHERE data ? 'project_id' AND jsonb_typeof(data -> 'project_id') = 'string'"
    )
    op.execute(
        "CREATE INDEX outbox_kind_position ON outbox (kind, position) WHERE position IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX outbox_project_position ON outbox (project_id, position)"
        " WHERE project_id IS NOT NULL"
    )
    op.execute(
        """
        CREATE TABLE people (
            principal_id text PRIMARY KEY,
            display_name text NOT NULL,
            email text,
            chat_webhook_url text,
            preferences jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE revoked_tokens (
            jti text PRIMARY KEY,
            expires_at timestamptz NOT NULL,
            reason text NOT NULL DEFAULT '',
            revoked_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    _qualify_stored_principals()


def _qualify_stored_principals() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT aggregate_type, aggregate_id, state FROM aggregate_state"
            " WHERE aggregate_type IN ('project', 'plan', 'task')"
        )
    )
    for aggregate_type, aggregate_id, state in rows.fetchall():
        qualified = _qualified(state)
        if qualified != state:
            connection.execute(
                sa.text(
                    "UPDATE aggregate_state SET state = CAST(:state AS jsonb)"
                    " WHERE aggregate_type = :type AND aggregate_id = :id"
                ),
                {"state": json.dumps(qualified), "type": aggregate_type, "id": aggregate_id},
            )


def _qualified(value: Any) -> Any:  # noqa: ANN401  (a JSON value)
    """`value` with every principal under a known key namespaced (`legacy:` if it was not)."""
    if isinstance(value, list):
        return [_qualified(item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in _PRINCIPAL_LISTS and isinstance(item, list):
            out[key] = [_legacy(name) for name in item]
        elif key in _PRINCIPAL_VALUES and isinstance(item, str):
            out[key] = _legacy(item)
        else:
            out[key] = _qualified(item)
    return out


def _legacy(name: Any) -> Any:  # noqa: ANN401
    if isinstance(name, str) and not _NAMESPACED.match(name):
        return f"legacy:{name}"
    return name


def downgrade() -> None:
    op.execute("DROP TABLE revoked_tokens")
    op.execute("DROP TABLE people")
    op.execute("DROP INDEX outbox_project_position")
    op.execute("DROP INDEX outbox_kind_position")
    op.execute("ALTER TABLE outbox DROP COLUMN project_id")
    op.execute("ALTER TABLE outbox DROP COLUMN kind")
