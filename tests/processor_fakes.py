"""In-memory doubles of what the processor's real unit of work also refuses."""

from __future__ import annotations

from infra.db.aggregate_ids import AggregateIdTakenError
from tests.fakes import FakeAggregateUnitOfWork


class FakeProcessorUnitOfWork(FakeAggregateUnitOfWork):
    """`FakeAggregateUnitOfWork` whose commit refuses a new aggregate with another type's id.

    As the event log's `(aggregate_id, aggregate_version)` index does on PostgreSQL
    (infra.db.aggregate_ids): nothing of the block is kept.
    """

    async def commit(self) -> None:
        """Keep every write of this block, unless a new aggregate's id is another type's."""
        self._current()
        holders = {key: kind for kind, key in self.rows}
        for kind, key in self._state.written:
            holder = holders.setdefault(key, kind)
            if holder != kind:
                raise AggregateIdTakenError(kind, key, holder)
        await super().commit()
