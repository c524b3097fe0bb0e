"""The inbox of `PgUnitOfWork`: an optimistic claim, written and checked by the commit.

The claim reads nothing: it keeps `(consumer, message id)` for the commit statement, which
inserts the inbox row `ON CONFLICT DO NOTHING` and fails as a whole (`AlreadyAppliedError`)
if the row was there already, written by an earlier or a concurrent copy of the message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.db.uow import AlreadyAppliedError as AlreadyAppliedError  # noqa: PLC0414  (re-export)

if TYPE_CHECKING:
    import uuid


class PgInbox:
    """`infra.db.uow.Inbox` whose claims are kept for the unit's commit statement."""

    def __init__(self) -> None:
        self.claims: list[tuple[str, uuid.UUID]] = []

    async def claim(self, consumer: str, message_id: uuid.UUID) -> bool:
        """True, and kept: if `consumer` applied `message_id` already, the commit says so.

        (It raises `AlreadyAppliedError` instead of writing anything.)
        """
        if (consumer, message_id) not in self.claims:
            self.claims.append((consumer, message_id))
        return True
