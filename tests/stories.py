"""Client-side stories against a running ingress, spoken in HTTP only, as a real client would.

One story: `CreateProject` (an approval policy that needs both of two approvers), wait until
it is decided (a plan needs its project), then `DraftPlan` (ids chosen by the client),
`SubmitPlan` as soon as the DraftPlan's `202` arrives, and the two approvals (`ApprovePlan`,
each with its approver's own key, `voters`; without voters, by the story's admin key on
behalf of `APPROVERS`) posted at once as soon as the SubmitPlan's `202` arrives. Nothing
waits for the plan's commands to be processed: a processor that decides the commands of one
aggregate in acceptance order approves every plan; one that does not rejects some with
`plan-not-found` or `plan-not-submitted` (`ORDER_PROBLEMS`).

`Stories` runs many of them (closed loop with a bound, or open loop at a rate), records
every accepted command (`Accepted`: when it was posted and when its 202 came), and at the
end polls `GET /v1/commands/{id}` for each until it is decided, counting outcomes by problem
code. Every POST carries an `Idempotency-Key` of the client's, so a `503`/`504` is retried
with it (the same command id, applied once).

Used by `tests/chaos/test_command_order.py` and `bench/processor_latency.py --mix stories`.
The HTTP client is a `Transport`: `HttpxTransport` for tests, a cheaper one in the bench.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from events import catalog
from events.plan import ApprovePlan, DraftPlan, HumanStep, SubmitPlan
from events.project import ApprovalPolicy, CreateProject

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from events import Command

APPROVERS = ("key:story-alice", "key:story-bob")  # voted for on their behalf (an admin token)
COMMANDS_PER_STORY = 5
ORDER_PROBLEMS = frozenset({"plan-not-found", "plan-not-submitted"})
POLL_INTERVAL = 0.025
DECIDE_DEADLINE = 45.0  # one command, from its 202 to its decision
POST_ATTEMPTS = 5
RETRY_AFTER = 0.2
STATUS_READERS = 16  # GETs in flight at once while outcomes are collected
UNDECIDED = "undecided"


class Transport(Protocol):
    """One HTTP exchange with the ingress: the status code and the body of the answer."""

    async def request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """Send `method path` with `headers` (and `body`, if any); return status and body."""
        ...


class HttpxTransport:
    """A `Transport` over an `httpx.AsyncClient` whose `base_url` is the ingress."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """Send one request through the client."""
        answer = await self._client.request(method, path, content=body, headers=dict(headers))
        return answer.status_code, answer.content


@dataclass(frozen=True)
class Accepted:
    """A command the ingress answered `202` for."""

    command_id: str
    command: str  # its type, e.g. "SubmitPlan"
    story: int
    posted_at: float  # time.time() just before the POST was sent
    answered_at: float  # time.time() when the 202 had arrived


@dataclass(frozen=True)
class StoryPlan:
    """The commands of one story, in the order its client sends them."""

    create: CreateProject
    draft: DraftPlan
    submit: SubmitPlan
    votes: tuple[tuple[str | None, ApprovePlan], ...]  # (the voter's token, or None: the story's)


def story_plan(
    n: int,
    project_id: uuid.UUID,
    plan_id: uuid.UUID,
    step_id: uuid.UUID,
    voters: Mapping[str, str] | None = None,
) -> StoryPlan:
    """Story `n`'s commands for the given ids: one human step, one vote per approver.

    `voters` maps each approver's principal id to its token; without it, the story's token
    (an admin's) votes on behalf of `APPROVERS`.
    """
    approvers = tuple(voters) if voters else APPROVERS
    policy = ApprovalPolicy(approvers=approvers, required_approvals=len(approvers))
    step = HumanStep(step_id=step_id, title="Review", assignee=approvers[0], instructions="Read")
    votes = tuple(
        (voters[who], ApprovePlan(plan_id=plan_id))
        if voters
        else (None, ApprovePlan(plan_id=plan_id, on_behalf_of=who))
        for who in approvers
    )
    return StoryPlan(
        create=CreateProject(project_id=project_id, name=f"story {n}", policy=policy),
        draft=DraftPlan(plan_id=plan_id, project_id=project_id, title=f"plan {n}", steps=(step,)),
        submit=SubmitPlan(plan_id=plan_id),
        votes=votes,
    )


def voters_of(keys: Iterable[tuple[str, str]]) -> dict[str, str]:
    """`Stories.voters` of API keys given as `(key id, token)`: their principal ids."""
    return {f"key:{key_id}": token for key_id, token in keys}


def outcome_of(view: Mapping[str, Any]) -> str | None:
    """A command status answer as an outcome: `processed`, `rejected:<code>`, `failed:<code>`.

    None while the command is still `accepted` (undecided).
    """
    status = view.get("status")
    if status == "accepted":
        return None
    if status == "processed":
        return "processed"
    problem = view.get("problem") or {}
    return f"{status}:{problem.get('code', '?')}"


def order_violations(outcomes: Mapping[str, int]) -> dict[str, int]:
    """The outcomes that show a command decided before one its client sent earlier."""
    return {
        outcome: count
        for outcome, count in outcomes.items()
        if outcome.partition(":")[2] in ORDER_PROBLEMS and count
    }


class StoryError(AssertionError):
    """A story could not go on: a POST was refused, or its project was never created."""


@dataclass
class Stories:
    """Runs stories against the ingress behind `transport` with a `commands:write` token.

    A token that also has `state:read` lets `plans_approved` read the plans afterwards.
    Each approver votes with its own token (`voters`: principal id -> token), or, without
    voters, the token must be an admin's: it votes on the approvers' behalf.
    """

    transport: Transport
    token: str
    voters: Mapping[str, str] | None = None
    poll_interval: float = POLL_INTERVAL
    accepted: dict[str, Accepted] = field(default_factory=dict)
    plans: dict[int, uuid.UUID] = field(default_factory=dict)  # story -> its plan id
    errors: list[BaseException] = field(default_factory=list)
    status_reads: int = 0  # GETs of a command status, by the stories and by `outcomes`
    decided_at: dict[str, float] = field(default_factory=dict)  # the status's `updated_at`
    _decided: dict[str, str] = field(default_factory=dict)

    def headers(
        self, idempotency_key: str | None = None, token: str | None = None
    ) -> dict[str, str]:
        """The headers of a request (a POST's with its idempotency key), with `token`'s."""
        headers = {"Authorization": f"Bearer {token or self.token}"}
        if idempotency_key is not None:
            headers |= {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        return headers

    async def post(self, story: int, command: Command, token: str | None = None) -> Accepted:
        """POST one command until it is accepted (a 503/504 is retried with the same key)."""
        command_type = catalog.entry_for(command).type
        body = json.dumps(command.model_dump(mode="json")).encode()
        headers = self.headers(str(uuid.uuid4()), token)
        for attempt in range(1, POST_ATTEMPTS + 1):
            posted_at = time.time()
            status, answer = await self.transport.request(
                "POST", f"/v1/commands/{command_type}", body, headers
            )
            if status == 202:
                command_id = json.loads(answer)["command_id"]
                accepted = Accepted(command_id, command_type, story, posted_at, time.time())
                self.accepted[command_id] = accepted
                return accepted
            if status not in (503, 504) or attempt == POST_ATTEMPTS:
                raise StoryError(f"story {story}: {command_type} answered {status}: {answer!r}")
            await asyncio.sleep(RETRY_AFTER)
        raise AssertionError("unreachable")  # pragma: no cover

    async def status(self, command_id: str) -> str | None:
        """The command's outcome now (None while undecided or not known yet)."""
        if command_id in self._decided:
            return self._decided[command_id]
        self.status_reads += 1
        code, answer = await self.transport.request(
            "GET", f"/v1/commands/{command_id}", None, self.headers()
        )
        if code != 200:
            return None  # 404 before the marker is readable, 503 while a store is down
        view = json.loads(answer)
        outcome = outcome_of(view)
        if outcome is not None:
            self._decided[command_id] = outcome
            if view.get("updated_at"):
                self.decided_at[command_id] = datetime.fromisoformat(view["updated_at"]).timestamp()
        return outcome

    async def decided(self, command_id: str, deadline: float = DECIDE_DEADLINE) -> str:
        """Poll the command's status until it is decided; its outcome, or UNDECIDED."""
        end = time.monotonic() + deadline
        while True:
            if command_id not in self._decided:
                await asyncio.sleep(self.poll_interval)
            outcome = await self.status(command_id)
            if outcome is not None:
                return outcome
            if time.monotonic() > end:
                return UNDECIDED

    async def story(self, n: int) -> None:
        """One story: create, (decided) draft, submit on its 202, both votes on that 202."""
        plan = story_plan(n, uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), self.voters)
        created = await self.post(n, plan.create)
        outcome = await self.decided(created.command_id)
        if outcome != "processed":
            raise StoryError(f"story {n}: CreateProject ended {outcome}")
        self.plans[n] = plan.draft.plan_id
        await self.post(n, plan.draft)
        await self.post(n, plan.submit)
        await asyncio.gather(*(self.post(n, vote, token) for token, vote in plan.votes))

    async def _recorded(self, n: int) -> None:
        try:
            await self.story(n)
        except (StoryError, httpx.HTTPError, OSError, ValueError, KeyError, IndexError) as exc:
            # kept (a refused POST, a lost connection, an answer not understood): the caller judges
            self.errors.append(exc)

    async def run(self, count: int, *, concurrency: int, first: int = 0) -> None:
        """Run stories `first..first+count-1`, at most `concurrency` at a time."""
        gate = asyncio.Semaphore(concurrency)

        async def bounded(n: int) -> None:
            async with gate:
                await self._recorded(n)

        await asyncio.gather(*(bounded(n) for n in range(first, first + count)))

    async def open_loop(self, count: int, *, rate: float, first: int = 0) -> None:
        """Start stories `first..first+count-1` at `rate` stories/s, whatever the answers."""
        start = time.perf_counter()
        tasks = []
        for k in range(count):
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._recorded(first + k)))
        await asyncio.gather(*tasks)

    async def outcomes(self, deadline: float = DECIDE_DEADLINE) -> Counter[str]:
        """Every accepted command's outcome, polled until decided (UNDECIDED after `deadline`)."""
        gate = asyncio.Semaphore(STATUS_READERS)
        end = time.monotonic() + deadline

        async def one(command_id: str) -> str:
            async with gate:
                return await self.decided(command_id, max(0.0, end - time.monotonic()))

        return Counter(await asyncio.gather(*(one(c) for c in list(self.accepted))))

    def outcome(self, command_id: str) -> str:
        """The outcome `outcomes` found for one command (UNDECIDED if none)."""
        return self._decided.get(command_id, UNDECIDED)

    async def plans_approved(self) -> Counter[str]:
        """The status of every story's plan as `GET /v1/plans/{id}` reads it, counted."""
        gate = asyncio.Semaphore(STATUS_READERS)

        async def one(plan_id: uuid.UUID) -> str:
            async with gate:
                code, answer = await self.transport.request(
                    "GET", f"/v1/plans/{plan_id}", None, self.headers()
                )
            return str(json.loads(answer).get("status")) if code == 200 else f"http {code}"

        return Counter(await asyncio.gather(*(one(p) for p in self.plans.values())))
