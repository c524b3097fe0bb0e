"""`hisho_expect_written`: a statement that wrote fewer rows than meant fails as a whole.

The command processor writes a command's effects in one statement (infra.db.statement).
Rows of it that a concurrent writer left out make this function raise, so nothing of the
statement is kept: an inbox row already there raises SQLSTATE `HS208` (already applied), a
taken id or a moved-on version `HS409` (stale write).

Revision ID: 0004_expect_written
Revises: 0003_api_keys
"""

from __future__ import annotations

from alembic import op

revision = "0004_expect_written"
down_revision = "0003_api_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION hisho_expect_written(
            claims bigint, claimed bigint, expected bigint, written bigint
        ) RETURNS bigint
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            IF claimed <> claims THEN
                RAISE EXCEPTION 'already applied: % of % inbox rows written', claimed, claims
                    USING ERRCODE = 'HS208';
            END IF;
            IF written <> expected THEN
                RAISE EXCEPTION 'stale write: % of % rows written', written, expected
                    USING ERRCODE = 'HS409',
                          HINT = 'another transaction wrote first; read again and retry';
            END IF;
            RETURN written;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION hisho_expect_written(bigint, bigint, bigint, bigint)")
