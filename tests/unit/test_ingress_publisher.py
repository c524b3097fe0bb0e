"""The ingress publishes on the aiormq channel directly, with the properties aio-pika would send."""

from __future__ import annotations

from datetime import UTC, datetime

import aio_pika
from pamqp import frame
from pamqp.header import ContentHeader

from producers.ingress.publisher import OutgoingCommand, amqp_properties


def test_the_content_header_is_the_one_an_aio_pika_message_sends() -> None:
    command = OutgoingCommand(
        routing_key="SubmitPlan",
        body=b'{"id": "..."}',
        message_id="5b0c4f5e-8d1c-4c1e-9d55-2f3f9d0f1a10",
        type="SubmitPlan",
        correlation_id="0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5",
        timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        headers={"type": "SubmitPlan", "body-sha256": "ab" * 32, "traceparent": "00-a-b-01"},
    )
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
