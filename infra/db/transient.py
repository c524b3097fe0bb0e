"""Which database errors are worth trying again: lost connections, conflicts between writers."""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa_exc

# SQLSTATE classes and codes that mean "the same statement may succeed later".
_TRANSIENT_CLASSES = ("08",)  # connection exception
_TRANSIENT_CODES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "53300",  # too_many_connections
    }
)

# A statement prepared before a schema change (a migration) fails once per connection inside a
# transaction; asyncpg then forgets it, so the same transaction run again succeeds.
_STALE_STATEMENTS = (
    asyncpg.exceptions.InvalidCachedStatementError | asyncpg.exceptions.OutdatedSchemaCacheError
)


def is_transient_database_error(error: BaseException) -> bool:
    """True for errors where retrying the whole transaction later may succeed."""
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        orig = error.orig  # the driver's error, wrapping asyncpg's as its cause
        if orig is None:
            return False
        return _transient_code(getattr(orig, "sqlstate", None)) or is_transient_database_error(
            orig.__cause__ or orig
        )
    if isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError | _STALE_STATEMENTS):
        return True  # pool exhausted for a while, a connection dropped, a schema change
    if isinstance(error, asyncpg.PostgresError):
        return _transient_code(getattr(error, "sqlstate", None))
    return isinstance(
        error,
        asyncpg.InterfaceError | asyncpg.exceptions.ConnectionDoesNotExistError | OSError,
    )


def _transient_code(sqlstate: object) -> bool:
    code = str(sqlstate or "")
    return code in _TRANSIENT_CODES or code.startswith(_TRANSIENT_CLASSES)
