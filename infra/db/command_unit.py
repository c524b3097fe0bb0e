"""Old names of the PostgreSQL unit of work (`infra.db.pg_uow`), until their last users move."""

from infra.db.inbox import PgInbox as KeptInbox
from infra.db.pg_uow import PgUnitOfWork as SqlAggregateUnitOfWork

__all__ = ["KeptInbox", "SqlAggregateUnitOfWork"]
