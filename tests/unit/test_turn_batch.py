"""Batching by event-loop turn, without any server."""

from __future__ import annotations

import asyncio

from infra.turn_batch import TurnBatch, settle


async def test_items_of_one_turn_form_one_batch_and_later_ones_the_next() -> None:
    batches: list[list[int]] = []
    handled = asyncio.Event()

    async def handle(batch: list[int]) -> None:
        batches.append(batch)
        handled.set()

    turn = TurnBatch(handle)
    for item in (1, 2, 3):
        turn.submit(item)
    await handled.wait()
    handled.clear()
    turn.submit(4)  # alone: handed over in the next turn, without waiting for company
    await handled.wait()
    assert batches == [[1, 2, 3], [4]]


async def test_submissions_from_concurrent_tasks_in_one_turn_share_a_batch() -> None:
    batches: list[list[str]] = []

    async def handle(batch: list[str]) -> None:
        batches.append(batch)

    turn = TurnBatch(handle)

    async def submit(name: str) -> None:
        turn.submit(name)

    await asyncio.gather(submit("a"), submit("b"))
    await asyncio.sleep(0)  # the hand-over task runs
    await asyncio.sleep(0)
    assert batches == [["a", "b"]]


async def test_settle_gives_a_waiter_its_outcome_unless_it_has_one() -> None:
    loop = asyncio.get_running_loop()
    answered, failed, cancelled = (loop.create_future() for _ in range(3))
    cancelled.cancel()  # its task gave up while the batch ran
    settle(answered, 7)
    settle(failed, 0, ValueError("lost"))
    settle(cancelled, 7)
    assert answered.result() == 7
    assert isinstance(failed.exception(), ValueError)
    assert cancelled.cancelled()
