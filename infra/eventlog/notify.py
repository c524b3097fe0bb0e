"""The optional NOTIFY trigger that wakes the relay when outbox rows are committed.

A statement-level trigger sends one `NOTIFY hisho_outbox` per inserting statement (PostgreSQL
folds identical notifications of one transaction into one). The notification is delivered at
commit, and PostgreSQL serializes the commits of notifying transactions on a global lock, so
the trigger costs concurrent writers throughput (figures in docs/relay.md). It is therefore
off by default (`HISHO_RELAY_NOTIFY`); the relay polls adaptively instead. A migration may
call `notify_trigger_ddl()`; the relay itself applies `set_notify_trigger` at start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

NOTIFY_CHANNEL = "hisho_outbox"

_FUNCTION = f"""CREATE OR REPLACE FUNCTION hisho_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
    RETURN NULL;
END
$$"""
_TRIGGER = """CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON outbox
FOR EACH STATEMENT EXECUTE FUNCTION hisho_outbox_notify()"""
_DROP = "DROP TRIGGER IF EXISTS outbox_notify ON outbox"
_EXISTS = """SELECT EXISTS (SELECT 1 FROM pg_trigger
    WHERE tgname = 'outbox_notify' AND tgrelid = 'outbox'::regclass)"""


def notify_trigger_ddl() -> tuple[str, ...]:
    """The statements that create the trigger (idempotent: `CREATE OR REPLACE`)."""
    return (_FUNCTION, _TRIGGER)


def drop_notify_trigger_ddl() -> tuple[str, ...]:
    """The statement that removes the trigger (the function may stay)."""
    return (_DROP,)


async def set_notify_trigger(connection: asyncpg.Connection, *, enabled: bool) -> None:
    """Create or drop the trigger so that it exists exactly when `enabled`."""
    exists = await connection.fetchval(_EXISTS)
    if exists == enabled:
        return  # DDL would lock the outbox for nothing
    statements = notify_trigger_ddl() if enabled else drop_notify_trigger_ddl()
    async with connection.transaction():
        for statement in statements:
            await connection.execute(statement)
