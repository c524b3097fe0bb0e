"""What a unit of work's commit may refuse with (nothing of the unit is written then).

The port (`infra.db.uow`) names them; the repositories raise `ConcurrencyError` too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uuid


class AlreadyAppliedError(Exception):
    """The claimed message was applied by this consumer already; nothing was written."""


class ConcurrencyError(Exception):
    """Another transaction changed (or created) what this one read since it read it: retry."""


class HeldError(Exception):
    """An ordered consumer's message must wait: an earlier one of its partition is held."""

    def __init__(self, blocker: uuid.UUID | None, reason: str = "") -> None:
        super().__init__(reason or f"held behind {blocker or 'an earlier message'}")
        self.blocker = blocker
