"""The workflow cycle in memory: the command processor and the workflow consumer on one fake
database, an in-process relay between them, and the scheduler's timers on the fake clock.

`FakeCycle.send(command)` delivers a command to the processor's runner, then `pump()` passes
every new outbox envelope on as the relay and the broker would: commands to the processor,
the events the workflow consumer handles to its runner (each through the framework's
retries, `deliver_with_retries`). `fire(after)` moves the clock and fires due timers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consumers import command_processor, workflow
from events import Command, catalog
from infra.consumers import Runner
from tests.command_scenarios import ACTOR, command_envelope
from tests.consumer_support import FakeHeldMessages, deliver_with_retries
from tests.fakes import FakeClock, FakeDatabase, FakeUnitOfWork
from tests.people_fakes import FakePersonDirectory
from tests.scheduler_fakes import fire_timers

if TYPE_CHECKING:
    from datetime import timedelta

    from events import Actor, Envelope, Message
    from infra.db.command_status import CommandStatus


class FakeCycle:
    """The processor, the workflow consumer and the timers over one `FakeDatabase`."""

    def __init__(self) -> None:
        self.db, self.clock = FakeDatabase(), FakeClock()
        units = lambda: FakeUnitOfWork(db=self.db, clock=self.clock)  # noqa: E731
        self.processor = Runner(
            command_processor.CONSUMER,
            units,
            held=FakeHeldMessages(self.db),
            deps={"clock": self.clock, "people": FakePersonDirectory()},
        )
        self.workflow = Runner(workflow.CONSUMER, units, held=FakeHeldMessages(self.db))
        self._relayed = 0

    async def send(self, command: Command, *, actor: Actor = ACTOR) -> Envelope[Message]:
        """Deliver `command` to the processor, then pump what follows; its envelope."""
        envelope = command_envelope(command, actor=actor)
        await deliver_with_retries(self.processor, envelope)
        await self.pump()
        return envelope

    async def pump(self) -> None:
        """Relay every new outbox envelope to whoever reads it, until nothing new comes."""
        while self._relayed < len(self.db.envelopes):
            envelope = self.db.envelopes[self._relayed]
            self._relayed += 1
            if catalog.entry(envelope.type).kind == "command":
                await deliver_with_retries(self.processor, envelope)
            elif self.workflow.consumer.handler_for(envelope.data) is not None:
                await deliver_with_retries(self.workflow, envelope)

    async def fire(self, after: timedelta) -> list[Envelope[Message]]:
        """Move the clock on by `after`, fire the due timers, pump; the commands they sent."""
        self.clock.advance(after)
        sent = await fire_timers(self.db, self.clock)
        await self.pump()
        return sent

    def events(self, type_name: str) -> list[Envelope[Message]]:
        """Every committed envelope of `type_name`, in order."""
        return [e for e in self.db.envelopes if e.type == type_name]

    def status(self, command_id: object) -> CommandStatus:
        """The recorded status of a command."""
        return FakeUnitOfWork(db=self.db).statuses[command_id]  # type: ignore[index]
