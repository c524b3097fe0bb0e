"""The consumer runtime's decisions: what is retried, where a failed message goes.

The command processor is an ordered consumer: its transient failures are retried in process
only, then parked (no delay queue may let a later command of its aggregate overtake it).
"""

from __future__ import annotations

from dataclasses import replace

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from consumers.command_processor import CONSUMER
from events import InvalidMessageError, UnknownMessageTypeError
from infra.consumers.runner import policy_for
from infra.consumers.runtime import (
    RuntimePolicy,
    call_with_retries,
    is_retryable,
    is_transient,
    settlement_for,
)
from infra.db.repositories import ConcurrencyError
from infra.topology import ConsumerQueues

QUEUES = ConsumerQueues(consumer="demo", bindings=("x.y",), retry_delays_ms=(100, 1_000))
POLICY = RuntimePolicy(queues=QUEUES, attempts=3, first_wait=0.0, max_wait=0.0)


def test_contract_errors_are_parked_at_once_with_the_reason() -> None:
    settlement = settlement_for(UnknownMessageTypeError("Bogus"), POLICY, retries_done=0)
    assert settlement.action == "park"
    assert (settlement.exchange, settlement.routing_key) == ("hisho.dead", "demo")
    assert settlement.reason == "invalid message: Bogus.type: unknown message type"
    assert settlement.error == "UnknownMessageTypeError"


def test_transient_errors_climb_the_delay_ladder_then_park() -> None:
    error = ConnectionError("db gone")
    steps = [settlement_for(error, POLICY, retries_done=n) for n in range(3)]
    assert [(s.action, s.exchange, s.routing_key) for s in steps] == [
        ("retry", "hisho.retry", "demo.100ms"),
        ("retry", "hisho.retry", "demo.1000ms"),
        ("park", "hisho.dead", "demo"),
    ]
    assert steps[2].reason == "gave up after 2 delayed retries: ConnectionError: db gone"


def test_unexpected_errors_are_parked_as_bugs() -> None:
    settlement = settlement_for(KeyError("x"), POLICY, retries_done=0)
    assert settlement.action == "park"
    assert settlement.reason.startswith("unexpected error: KeyError")


def test_reasons_are_bounded() -> None:
    error = InvalidMessageError("T", "f", "x" * 5_000)
    assert len(settlement_for(error, POLICY, retries_done=0).reason) == 1_000


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (asyncpg.exceptions.SerializationError("conflict"), True),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock"), True),
        (asyncpg.exceptions.CannotConnectNowError("starting"), True),
        (asyncpg.exceptions.UniqueViolationError("dup"), False),
        (asyncpg.exceptions.InvalidCachedStatementError("cached plan changed"), True),
        (sa_exc.DBAPIError("select 1", {}, OSError("gone"), connection_invalidated=True), True),
        (sa_exc.TimeoutError("pool exhausted"), True),
        (sa_exc.IntegrityError("insert", {}, ValueError("dup")), False),
        (ValueError("bug"), False),
    ],
)
def test_is_transient_knows_database_and_network_hiccups(
    error: BaseException, transient: bool
) -> None:
    assert is_transient(error) is transient


def test_the_processor_also_retries_version_conflicts_in_process_then_parks() -> None:
    conflict = ConcurrencyError("plan moved on")
    assert is_retryable(conflict)
    assert CONSUMER.transient is None  # the framework's default: `is_retryable`
    policy = policy_for(CONSUMER)
    assert policy.transient(conflict)
    assert policy.transient(ConnectionResetError())
    assert not policy.transient(ValueError("bug"))
    settled = settlement_for(conflict, policy, retries_done=0)
    assert (settled.action, settled.exchange, settled.routing_key) == (
        "park",
        "hisho.dead",
        "command_processor",
    )
    assert settled.reason == "gave up after 5 attempts: ConcurrencyError: plan moved on"


async def test_the_processor_retries_a_conflict_in_process_up_to_its_attempts() -> None:
    policy = replace(policy_for(CONSUMER), first_wait=0.0, max_wait=0.0)
    calls: list[int] = []

    async def conflicted(times: int) -> str:
        calls.append(1)
        if len(calls) <= times:
            raise ConcurrencyError("plan moved on")
        return "done"

    assert await call_with_retries(lambda: conflicted(CONSUMER.attempts - 1), policy) == "done"
    assert len(calls) == CONSUMER.attempts
    calls.clear()
    with pytest.raises(ConcurrencyError):
        await call_with_retries(lambda: conflicted(CONSUMER.attempts), policy)
    assert len(calls) == CONSUMER.attempts


async def test_call_with_retries_tries_again_while_transient() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("blip")
        return "done"

    assert await call_with_retries(flaky, POLICY) == "done"
    assert len(calls) == 3


async def test_call_with_retries_gives_up_after_its_attempts() -> None:
    calls: list[int] = []

    async def down() -> None:
        calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await call_with_retries(down, POLICY)
    assert len(calls) == 3


async def test_call_with_retries_does_not_retry_other_errors() -> None:
    calls: list[int] = []

    async def broken() -> None:
        calls.append(1)
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await call_with_retries(broken, POLICY)
    assert len(calls) == 1
