"""The ingress publisher: the properties aio-pika would send, and what each failure means.

It publishes on the process's `infra.amqp.ConfirmedPublisher`, which sorts the failures.

A failure is either "certainly not taken" (`BrokerUnavailableError`: the ingress says 503) or
"sent, outcome unknown" (`PublishOutcomeUnknownError`: 504). The broker here is a stand-in
that answers a publish the way aiormq does (returns the ack, or raises what aiormq raises).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import aio_pika
import pytest
from aiormq import spec
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import (
    ChannelClosed,
    ChannelInvalidStateError,
    ConnectionClosed,
    DeliveryError,
    PublishError,
)
from pamqp import frame
from pamqp.header import ContentHeader

from infra.amqp import AmqpConnection, ConfirmedPublisher
from producers.ingress.ports import (
    BrokerUnavailableError,
    OutgoingCommand,
    PublishOutcomeUnknownError,
)
from producers.ingress.publisher import AmqpCommandPublisher, amqp_properties

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aiormq.abc import AbstractChannel

COMMAND = OutgoingCommand(
    routing_key="SubmitPlan",
    body=b'{"id": "..."}',
    message_id="5b0c4f5e-8d1c-4c1e-9d55-2f3f9d0f1a10",
    type="SubmitPlan",
    correlation_id="0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5",
    timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    headers={"type": "SubmitPlan", "body-sha256": "ab" * 32, "traceparent": "00-a-b-01"},
)


def test_the_content_header_is_the_one_an_aio_pika_message_sends() -> None:
    command = COMMAND
    message = aio_pika.Message(
        body=command.body,
        message_id=command.message_id,
        type=command.type,
        correlation_id=command.correlation_id,
        timestamp=command.timestamp,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=command.headers,
    )
    size = len(command.body)
    ours = frame.marshal(ContentHeader(0, size, amqp_properties(command)), 1)
    theirs = frame.marshal(ContentHeader(0, size, message.properties), 1)
    assert ours == theirs


class _Broker:
    """A stand-in for the robust connection, its channel and the aiormq channel beneath."""

    def __init__(self, outcome: Callable[[], Awaitable[object]]) -> None:
        self.outcome = outcome
        self.is_closed = False
        self.sent: list[bytes] = []

    async def get_underlay_channel(self) -> _Broker:
        return self

    async def basic_publish(self, body: bytes, **_: object) -> object:
        self.sent.append(body)
        return await self.outcome()


def _publisher(broker: _Broker | None) -> AmqpCommandPublisher:
    connection = AmqpConnection("amqp://unused")
    confirmed = ConfirmedPublisher(connection)
    if broker is not None:  # connected, channel open: what connecting and `start` set
        connection._connection = broker  # type: ignore[assignment]
        confirmed._channel = broker  # type: ignore[assignment]
    return AmqpCommandPublisher(confirmed, confirm_timeout=0.05)


def _returned() -> PublishError:
    frame = spec.Basic.Return(reply_code=312, reply_text="NO_ROUTE", routing_key="SubmitPlan")
    channel = cast("AbstractChannel", None)  # never read: the error only names the delivery
    message = DeliveredMessage(delivery=frame, header=ContentHeader(), body=b"", channel=channel)
    return PublishError(message, frame)


async def _ack() -> object:
    return spec.Basic.Ack(delivery_tag=1)


def _raising(exc: BaseException) -> Callable[[], Awaitable[object]]:
    async def outcome() -> object:
        raise exc

    return outcome


async def _no_confirm() -> object:
    await asyncio.sleep(5)  # far past the confirm timeout
    return spec.Basic.Ack(delivery_tag=1)


NOT_ACCEPTED = {
    "nack": _raising(DeliveryError(None, spec.Basic.Nack(delivery_tag=1))),
    "returned, unroutable": _raising(_returned()),
    "channel closed before sending": _raising(ChannelInvalidStateError("closed")),
}
UNKNOWN = {
    "no confirm in time": _no_confirm,
    "channel lost while waiting": _raising(ChannelClosed(406, "PRECONDITION_FAILED")),
    "connection lost while waiting": _raising(ConnectionClosed(320, "CONNECTION_FORCED")),
    "socket reset": _raising(ConnectionResetError("reset by peer")),
}


async def test_a_confirmed_publish_returns() -> None:
    broker = _Broker(_ack)
    await _publisher(broker).publish(COMMAND)
    assert broker.sent == [COMMAND.body]


async def test_a_publish_while_not_connected_is_refused_without_sending() -> None:
    with pytest.raises(BrokerUnavailableError, match="not connected"):
        await _publisher(None).publish(COMMAND)
    closed = _Broker(_ack)
    closed.is_closed = True
    with pytest.raises(BrokerUnavailableError):
        await _publisher(closed).publish(COMMAND)
    assert closed.sent == []


@pytest.mark.parametrize("case", NOT_ACCEPTED)
async def test_a_broker_that_certainly_did_not_take_the_command_is_unavailable(case: str) -> None:
    with pytest.raises(BrokerUnavailableError):
        await _publisher(_Broker(NOT_ACCEPTED[case])).publish(COMMAND)


@pytest.mark.parametrize("case", UNKNOWN)
async def test_a_publish_sent_without_a_confirm_has_an_unknown_outcome(case: str) -> None:
    with pytest.raises(PublishOutcomeUnknownError):
        await _publisher(_Broker(UNKNOWN[case])).publish(COMMAND)
