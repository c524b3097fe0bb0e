"""tests/stories.py against a fake ingress: what a story sends, when, and how outcomes count."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from events import catalog
from events.plan import ApprovePlan, DraftPlan, SubmitPlan
from events.project import CreateProject
from tests.stories import (
    APPROVERS,
    Stories,
    StoryError,
    order_violations,
    outcome_of,
    story_plan,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

BARRIER_DEADLINE = 2.0


class FakeIngress:
    """Answers POSTs with 202 and a fresh command id, and GETs with a status from `decide`.

    It logs every exchange; the two approvals of a plan are answered only once both have
    arrived (so a story that posted them one after the other would time out here).
    """

    def __init__(self, *, refuse_first: int = 0, reject: Mapping[str, str] | None = None) -> None:
        self.log: list[tuple[str, str, str]] = []  # (what, command type or id, phase)
        self.types: dict[str, str] = {}  # command id -> type
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []
        self._refuse = refuse_first
        self._reject = dict(reject or {})  # command type -> problem code
        self._votes: dict[str, list[asyncio.Event]] = {}

    async def request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        assert headers["Authorization"] == "Bearer token"
        if method == "GET":
            return self._get(path.rsplit("/", 1)[1])
        assert body is not None
        command_type = path.rsplit("/", 1)[1]
        self.posts.append((command_type, body, dict(headers)))
        if self._refuse:
            self._refuse -= 1
            return 503, b'{"code": "broker-unavailable"}'
        self.log.append(("POST", command_type, "sent"))
        if command_type == "ApprovePlan":
            await self._both_votes(json.loads(body)["plan_id"])
        command_id = str(uuid.uuid4())
        self.types[command_id] = command_type
        self.log.append(("POST", command_type, "202"))
        return 202, json.dumps({"command_id": command_id}).encode()

    async def _both_votes(self, plan_id: str) -> None:
        arrived = asyncio.Event()
        votes = self._votes.setdefault(plan_id, [])
        votes.append(arrived)
        if len(votes) == len(APPROVERS):
            for vote in votes:
                vote.set()
        await asyncio.wait_for(arrived.wait(), BARRIER_DEADLINE)

    def _get(self, command_id: str) -> tuple[int, bytes]:
        command_type = self.types[command_id]
        self.log.append(("GET", command_type, "processed"))
        view: dict[str, Any] = {"command_id": command_id, "status": "processed"}
        if code := self._reject.get(command_type):
            view = {"status": "rejected", "problem": {"code": code, "status": 409}}
        return 200, json.dumps(view).encode()


async def test_a_story_drafts_after_its_project_is_decided_and_then_waits_only_for_202s() -> None:
    ingress = FakeIngress()
    stories = Stories(ingress, "token", poll_interval=0.001)
    await stories.story(7)
    assert ingress.log == [
        ("POST", "CreateProject", "sent"),
        ("POST", "CreateProject", "202"),
        ("GET", "CreateProject", "processed"),
        ("POST", "DraftPlan", "sent"),
        ("POST", "DraftPlan", "202"),
        ("POST", "SubmitPlan", "sent"),
        ("POST", "SubmitPlan", "202"),
        ("POST", "ApprovePlan", "sent"),
        ("POST", "ApprovePlan", "sent"),
        ("POST", "ApprovePlan", "202"),
        ("POST", "ApprovePlan", "202"),
    ]
    assert sorted(a.command for a in stories.accepted.values()) == sorted(
        ["CreateProject", "DraftPlan", "SubmitPlan", "ApprovePlan", "ApprovePlan"]
    )
    assert {a.story for a in stories.accepted.values()} == {7}
    assert all(a.posted_at <= a.answered_at for a in stories.accepted.values())


async def test_the_bodies_are_valid_commands_of_one_plan_voted_on_by_both_approvers() -> None:
    ingress = FakeIngress()
    await Stories(ingress, "token", poll_interval=0.001).story(1)
    sent = [catalog.entry(kind).model.model_validate_json(body) for kind, body, _ in ingress.posts]
    create, draft, submit, *votes = sent
    assert isinstance(create, CreateProject)
    assert isinstance(draft, DraftPlan)
    assert isinstance(submit, SubmitPlan)
    assert create.policy.required_approvals == len(create.policy.approvers) == len(APPROVERS)
    assert (draft.project_id, submit.plan_id) == (create.project_id, draft.plan_id)
    assert all(isinstance(v, ApprovePlan) and v.plan_id == draft.plan_id for v in votes)
    voted_for = sorted(v.on_behalf_of or "" for v in votes if isinstance(v, ApprovePlan))
    assert voted_for == sorted(APPROVERS)
    keys = [headers["Idempotency-Key"] for _, _, headers in ingress.posts]
    assert len(set(keys)) == len(keys) == 5


async def test_a_refused_post_is_sent_again_with_the_same_key_and_body() -> None:
    ingress = FakeIngress(refuse_first=2)
    stories = Stories(ingress, "token", poll_interval=0.001)
    plan = story_plan(3, uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    accepted = await stories.post(3, plan.submit)
    assert accepted.command == "SubmitPlan"
    assert [body for _, body, _ in ingress.posts] == [ingress.posts[0][1]] * 3
    assert len({h["Idempotency-Key"] for _, _, h in ingress.posts}) == 1


async def test_a_story_whose_project_is_not_created_stops_with_a_story_error() -> None:
    ingress = FakeIngress(reject={"CreateProject": "aggregate-id-taken"})
    stories = Stories(ingress, "token", poll_interval=0.001)
    with pytest.raises(StoryError, match="aggregate-id-taken"):
        await stories.story(2)
    await stories.run(3, concurrency=2)
    assert len(stories.errors) == 3
    assert [kind for kind, _, _ in ingress.posts] == ["CreateProject"] * 4


async def test_outcomes_count_every_accepted_command_by_problem_code() -> None:
    ingress = FakeIngress(reject={"SubmitPlan": "plan-not-found"})
    stories = Stories(ingress, "token", poll_interval=0.001)
    await stories.run(4, concurrency=4)
    outcomes = await stories.outcomes()
    assert outcomes == {"processed": 16, "rejected:plan-not-found": 4}
    assert order_violations(outcomes) == {"rejected:plan-not-found": 4}


def test_a_status_answer_reads_as_an_outcome() -> None:
    assert outcome_of({"status": "accepted"}) is None
    assert outcome_of({"status": "processed", "result_event_ids": []}) == "processed"
    rejected = {"status": "rejected", "problem": {"code": "plan-not-submitted"}}
    assert outcome_of(rejected) == "rejected:plan-not-submitted"
    assert outcome_of({"status": "failed", "problem": {"code": "command-parked"}}) == (
        "failed:command-parked"
    )
    assert order_violations({"processed": 9, "rejected:plan-not-draft": 1}) == {}


async def test_with_voters_each_approver_votes_with_its_own_token() -> None:
    voters = {"key:ana": "token-ana", "key:bo": "token-bo"}
    plan = story_plan(1, uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), voters)
    assert plan.create.policy.approvers == ("key:ana", "key:bo")
    assert [(token, vote.on_behalf_of) for token, vote in plan.votes] == [
        ("token-ana", None),
        ("token-bo", None),
    ]
