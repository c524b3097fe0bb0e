"""schemathesis against the live ingress's /openapi.json, with a real processor behind it.

schemathesis's lazy pytest loader does not run under this pytest, so the test runs
schemathesis's own engine (what `schemathesis run` runs) on the schema: all four phases —
examples, coverage (boundary and invalid values for every keyword), fuzzing (positive and
negative) and stateful (sequences along the OpenAPI links: a command's 202 leads to its
status URL). The seed is fixed and the examples bounded, so a run is repeatable and short.

The checks are schemathesis's own, all of them but `positive_data_acceptance`: command models
have cross-field rules JSON Schema cannot state (e.g. `required_approvals` <= number of
approvers), which the ingress rightly answers with 422.

After the fuzz, every command the ingress answered 202 must end `processed` or `rejected` at
the processor, and none may be parked: a parked 202 is a promise broken (issue 13, item 7).
Parkings are seen through a tap queue bound like the parking queue, and the parking queue
itself is read once at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES
from schemathesis.engine import Status, events
from sqlalchemy import select

from infra.db.tables import command_status
from infra.topology import COMMAND_PARKED_QUEUE, COMMAND_PROCESSOR, DEAD_EXCHANGE
from tests.components_support import component_env, components, free_port
from tests.ingress_support import cli_key, hisho_cli
from tests.processor_support import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from aio_pika.abc import AbstractQueue, AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

pytestmark = pytest.mark.timeout(300)

SEED = 20260513
MAX_EXAMPLES = 3  # per operation and phase
STATEFUL_STEPS = 4
STATEFUL_EXAMPLES = 20  # scenarios: enough to walk the command -> status links, not only people
SETTLE_DEADLINE = 60.0
PHASES = ("examples", "coverage", "fuzzing", "stateful")
STATUS_OPERATION = "GET /v1/commands/{command_id}"
MUST_RUN = ("coverage", "fuzzing", "stateful")  # the document has no examples of its own


@pytest.fixture(scope="module")
def live_system(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """`hisho run processor` and `hisho run ingress` (no rate limit); the URL and an admin key."""
    port = free_port()
    env = component_env(settings, HISHO_INGRESS_PORT=str(port), HISHO_INGRESS_RATE_LIMIT="1000000")
    hisho_cli(env, "migrate")
    _, token = cli_key(env, "admin")
    with components(env, tmp_path_factory.mktemp("fuzz"), ("processor", "ingress")) as run:
        yield f"http://127.0.0.1:{port}", token
        assert run.stop("ingress") == 0
        assert run.stop("processor") == 0


@dataclass
class Fuzzed:
    """What the engine did and found."""

    accepted: set[uuid.UUID] = field(default_factory=set)  # command ids answered 202
    statuses: set[int] = field(default_factory=set)
    phases: dict[str, Status] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    operations: int = 0
    followed: int = 0  # status URLs of accepted commands read (the stateful link at work)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, label: str, response: Any) -> None:
        """Note one response (called from the engine's worker thread)."""
        with self.lock:
            self.statuses.add(response.status_code)
            if label == STATUS_OPERATION and response.status_code == 200:
                self.followed += 1
            if response.status_code == 202:
                self.accepted.add(uuid.UUID(json.loads(response.content)["command_id"]))


def _config(url: str, token: str, phases: tuple[str, ...] = PHASES) -> SchemathesisConfig:
    # A body too large for the ingress (413) is a rejection too, as schemathesis's own list
    # of rejecting statuses does not say.
    rejecting = [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "base-url": url,
            "workers": 1,
            "auth": {"openapi": {"bearer": {"bearer": token}}},
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
            "checks": {
                "positive_data_acceptance": {"enabled": False},
                "negative_data_rejection": {"expected-statuses": rejecting},
            },
            "phases": {
                **{name: {"enabled": name in phases} for name in PHASES},
                "stateful": {
                    "enabled": "stateful" in phases,
                    "max-steps": STATEFUL_STEPS,
                    "generation": {"max-examples": STATEFUL_EXAMPLES},
                },
            },
        }
    )


def fuzz(url: str, token: str) -> Fuzzed:
    """Run every phase of schemathesis's engine against the live ingress.

    The stateful phase walks one family of links per run (it keeps to the people
    directory's when they are there), so it runs once more over the commands alone, after
    a fuzzing pass it learns from: a command's 202 leads to its status URL.
    """
    document = httpx.get(f"{url}/openapi.json", timeout=10).json()
    commands = {
        **document,
        "paths": {
            path: item
            for path, item in document["paths"].items()
            if not path.startswith(("/v1/people", "/v1/parked", "/v1/notifications"))
        },
    }
    found = Fuzzed()
    for doc, phases in ((document, PHASES), (commands, ("fuzzing", "stateful"))):
        schema = schemathesis.openapi.from_dict(doc, config=_config(url, token, phases))
        found.operations = max(found.operations, sum(1 for _ in schema.get_all_operations()))

        @schema.hook
        def after_call(context: Any, case: Any, response: Any) -> None:
            found.saw(case.operation.label, response)

        for event in schemathesis.engine.from_schema(schema).execute():
            _note(found, event)
    return found


def _note(found: Fuzzed, event: events.EngineEvent) -> None:
    if isinstance(event, events.PhaseFinished):
        name = event.phase.name.value  # a phase the second run skips keeps the first's status
        if event.status is not Status.SKIP or name not in found.phases:
            found.phases[name] = event.status
    elif isinstance(event, events.ScenarioFinished):
        recorder = event.recorder
        for case_id, checks in recorder.checks.items():
            for check in checks:
                if check.status == Status.FAILURE and check.failure_info is not None:
                    case = recorder.cases[case_id].value
                    failure = check.failure_info.failure
                    found.failures.append(
                        f"[{event.phase.value}] {check.name} on {case.method} "
                        f"{case.formatted_path}: {failure.title}: {failure.message}\n"
                        f"{check.failure_info.code_sample}"
                    )
    elif isinstance(event, events.NonFatalError | events.FatalError):
        found.errors.append(repr(event.info) if hasattr(event, "info") else repr(event))


@contextlib.asynccontextmanager
async def parking_tap(amqp: AbstractRobustConnection) -> AsyncIterator[AbstractQueue]:
    """A private queue bound to `hisho.dead` as the processor's parking queue is."""
    channel = await amqp.channel()
    try:
        queue = await channel.declare_queue(f"test.parked.{uuid.uuid4()}", exclusive=True)
        await queue.bind(DEAD_EXCHANGE, COMMAND_PROCESSOR)
        yield queue
    finally:
        await channel.close()


async def _drain_ids(queue: AbstractQueue, *, ack: bool) -> set[str]:
    found: set[str] = set()
    while (message := await queue.get(no_ack=ack, fail=False)) is not None:
        found.add(str(message.message_id))
    return found


async def parked_in_queue(amqp: AbstractRobustConnection) -> set[str]:
    """Message ids in the parking queue now (read once; unacked, so they stay there)."""
    channel = await amqp.channel()
    try:
        queue = await channel.declare_queue(COMMAND_PARKED_QUEUE, passive=True)
        return await _drain_ids(queue, ack=False)
    finally:
        await channel.close()  # the unacknowledged gets go back to the queue


async def final_statuses(engine: AsyncEngine, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Command id -> status for the commands among `ids` the processor has recorded."""
    query = select(command_status.c.command_id, command_status.c.status).where(
        command_status.c.command_id.in_(list(ids)), command_status.c.status != "accepted"
    )
    async with engine.connect() as conn:
        return {cid: str(status) for cid, status in (await conn.execute(query)).tuples()}


async def test_every_phase_conforms_and_nothing_accepted_is_parked(
    live_system: tuple[str, str],
    amqp: AbstractRobustConnection,
    engine: AsyncEngine,
    record_property: Callable[[str, object], None],
) -> None:
    url, token = live_system
    async with parking_tap(amqp) as tap:
        found = await asyncio.to_thread(fuzz, url, token)
        parked: set[str] = set()
        accepted = {str(cid) for cid in found.accepted}

        async def settled() -> dict[uuid.UUID, str]:
            parked.update(await _drain_ids(tap, ack=True))
            done = await final_statuses(engine, found.accepted)
            waiting = accepted - {str(cid) for cid in done} - parked
            assert not waiting, f"{len(waiting)} accepted commands neither done nor parked"
            return done

        done = await eventually(settled, SETTLE_DEADLINE)
    parked |= await parked_in_queue(amqp)
    record_property("accepted", len(found.accepted))
    record_property("statuses", sorted(found.statuses))
    record_property("status_urls_followed", found.followed)
    assert found.operations > 30  # every command, the status URL, state reads, operations
    ran = {name: found.phases.get(name) for name in MUST_RUN}
    assert set(ran.values()) <= {Status.SUCCESS, Status.FAILURE}, found.phases
    assert not found.errors, "\n".join(found.errors)
    assert not found.failures, "\n\n".join(found.failures)
    assert {200, 202} <= found.statuses, found.statuses  # the credentials were used
    assert found.followed > 0  # random ids are 404: only the link finds real commands
    assert sorted(accepted & parked) == [], "commands answered 202 were parked"
    assert set(done.values()) <= {"processed", "rejected"}, done
