"""Parked messages: what an operator did with one, for the audit log (no body, no data).

The parked-message console (`hisho parked`, `/v1/parked`) records a discard with the
message's id and consumer and the operator's reason; the actor is the operator.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import MaxLen, MinLen

from events.base import DomainEvent
from events.catalog import catalog
from events.fields import Reason

ParkedId = Annotated[str, MinLen(1), MaxLen(200)]
ConsumerName = Annotated[str, MinLen(1), MaxLen(100)]


class ParkedMessageDiscarded(DomainEvent):
    """A parked message was discarded by an operator: it will never be applied."""

    message_id: ParkedId
    consumer: ConsumerName
    reason: Reason


catalog.add(ParkedMessageDiscarded, version=1, routing_key="parked.discarded")
