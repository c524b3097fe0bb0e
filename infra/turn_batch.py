"""Batching by event-loop turn: what is submitted during one turn is handled together.

Concurrent tasks that need the same kind of round trip (a Redis pipeline, a commit
statement) submit their part; once every task runnable in this turn has had its go, the
whole batch is handed to one handler, in a task of its own. A lone submission is handled at
once, in the next turn: nobody waits for company.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")


class TurnBatch(Generic[T]):
    """Hands the items submitted during one event-loop turn to `handle`, as one list.

    `handle` settles whatever its items carry (futures, say); an error it lets out is lost,
    so it must hand every error to the items it concerns.
    """

    def __init__(self, handle: Callable[[list[T]], Awaitable[None]]) -> None:
        self._handle = handle
        self._queued: list[T] = []
        self._running: set[asyncio.Task[None]] = set()  # referenced until done

    def submit(self, item: T) -> None:
        """Queue `item` for the batch of this turn."""
        self._queued.append(item)
        if len(self._queued) == 1:  # the first of this turn: hand over once the turn is over
            asyncio.get_running_loop().call_soon(self._hand_over)

    def _hand_over(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.ensure_future(self._handle(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)


def settle(waiter: asyncio.Future[T], result: T, error: BaseException | None = None) -> None:
    """Give a batch item's `waiter` its outcome, unless it has one already.

    It has one when its task was cancelled, or timed out, while the batch ran.
    """
    if waiter.done():
        return
    if error is None:
        waiter.set_result(result)
    else:
        waiter.set_exception(error)
