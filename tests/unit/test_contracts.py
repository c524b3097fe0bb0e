"""Every catalog type survives the wire, and bad input fails with a typed, precise error."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import types
from datetime import UTC, timedelta
from typing import Any, Union, get_args, get_origin
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, ValidationError

import events
from events import (
    Actor,
    ActorKind,
    CatalogEntry,
    Command,
    DomainEvent,
    Envelope,
    InvalidMessageError,
    Message,
    UnknownMessageTypeError,
    UnknownSchemaVersionError,
    catalog,
)
from events.fields import Principal
from events.plan import AiStep, HumanStep
from events.project import ApprovalPolicy

NAMESPACES = ("key", "user", "persona", "system", "legacy")
PRINCIPALS = st.builds(
    "{}:{}".format,
    st.sampled_from(NAMESPACES),
    st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40),
)
"""Valid principal ids (hypothesis cannot read `Principal`'s pattern itself)."""


def _mentions_principal(annotation: object) -> bool:
    return annotation == Principal or any(_mentions_principal(a) for a in get_args(annotation))


def _field_strategy(annotation: Any) -> st.SearchStrategy[Any]:
    """`st.from_type`, except that a principal (also inside `| None` or a tuple) is valid."""
    if not _mentions_principal(annotation):
        return st.from_type(annotation)
    if annotation == Principal:
        return PRINCIPALS
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in {Union, types.UnionType}:
        return st.one_of(*(_field_strategy(arg) for arg in args))
    if origin is tuple and args[1:] == (Ellipsis,):
        return st.lists(_field_strategy(args[0]), max_size=4, unique=True).map(tuple)
    if hasattr(annotation, "__metadata__"):  # Annotated[X, ...]: the model checks the rest
        return _field_strategy(args[0])
    raise TypeError(f"no strategy for {annotation!r}")


@st.composite
def _policies(draw: st.DrawFn) -> ApprovalPolicy:
    approvers = draw(st.lists(PRINCIPALS, min_size=1, max_size=5, unique=True))
    deadline = st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=365))
    return ApprovalPolicy(
        approvers=tuple(approvers),
        required_approvals=draw(st.integers(1, len(approvers))),
        auto_approve_max_steps=draw(st.integers(0, 1_000)),
        approval_deadline=draw(st.none() | deadline),
    )


# Process-wide registrations; each only describes valid values of a real type.
st.register_type_strategy(AwareDatetime, st.datetimes(timezones=st.just(UTC)))
st.register_type_strategy(ApprovalPolicy, _policies())
# Time limits: the soft one shorter than the hard one, as the step model requires.
_LIMITS = st.tuples(st.integers(1, 10_000), st.integers(1, 10_000)).map(
    lambda seconds: (timedelta(seconds=seconds[0]), timedelta(seconds=seconds[0] + seconds[1]))
)
st.register_type_strategy(
    HumanStep,
    _LIMITS.flatmap(
        lambda limits: st.builds(
            HumanStep,
            assignee=PRINCIPALS,
            soft_limit=st.just(limits[0]),
            hard_limit=st.just(limits[1]),
        )
    ),
)
st.register_type_strategy(
    AiStep,
    _LIMITS.flatmap(
        lambda limits: st.builds(
            AiStep, soft_limit=st.just(limits[0]), hard_limit=st.just(limits[1])
        )
    ),
)


def payloads(model: type[Message]) -> st.SearchStrategy[Message]:
    """Valid instances of `model`, every field (optional ones too) inferred from its types."""

    def construct(**fields: Any) -> Message:
        try:
            return model(**fields)
        except ValidationError:  # a cross-field rule, e.g. two generated step ids collided
            reject()

    params = inspect.signature(model).parameters
    fields = {name: _field_strategy(p.annotation) for name, p in params.items()}
    return st.builds(construct, **fields)


def envelopes(entry: CatalogEntry) -> st.SearchStrategy[Envelope[Message]]:
    """Envelopes of one catalog type with every envelope field generated."""
    maybe_uuid = st.none() | st.uuids()
    sequence = st.none() | st.integers(1, 2**63 - 1)
    return st.builds(
        Envelope[Message],
        id=st.uuids(),
        type=st.just(entry.type),
        version=st.just(entry.version),
        occurred_at=st.datetimes(timezones=st.just(UTC)),
        aggregate_type=st.none() | st.just(entry.aggregate or "command"),
        aggregate_id=maybe_uuid,
        aggregate_version=sequence,
        position=sequence,
        correlation_id=st.uuids(),
        causation_id=maybe_uuid,
        actor=st.builds(Actor, kind=st.sampled_from(ActorKind), id=st.text(min_size=1)),
        traceparent=st.none() | st.text(),
        data=payloads(entry.model),
    )


ENTRIES = catalog.entries()
_FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.type for e in ENTRIES])
@_FAST
@given(data=st.data())
def test_every_type_round_trips_through_json(entry: CatalogEntry, data: st.DataObject) -> None:
    envelope = data.draw(envelopes(entry))
    wire = catalog.encode(envelope)
    decoded = catalog.decode(wire)
    assert decoded == envelope
    assert type(decoded.data) is entry.model
    assert catalog.decode(json.loads(wire)) == envelope


def _wire(entry: CatalogEntry, payload: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        "id": str(uuid4()),
        "type": entry.type,
        "version": entry.version,
        "occurred_at": "2026-01-02T03:04:05Z",
        "correlation_id": str(uuid4()),
        "actor": {"kind": "user", "id": "ada"},
        "data": payload,
        **overrides,
    }


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.type for e in ENTRIES])
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_extra_field_names_type_and_field(entry: CatalogEntry, data: st.DataObject) -> None:
    payload = data.draw(payloads(entry.model)).model_dump(mode="json")
    with pytest.raises(InvalidMessageError) as caught:
        catalog.decode(_wire(entry, {**payload, "surprise": 1}))
    assert caught.value.message_type == entry.type
    assert caught.value.field == "surprise"


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.type for e in ENTRIES])
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_wrong_field_type_names_type_and_field(entry: CatalogEntry, data: st.DataObject) -> None:
    payload = data.draw(payloads(entry.model)).model_dump(mode="json")
    field = data.draw(st.sampled_from(sorted(entry.model.model_fields)))
    with pytest.raises(InvalidMessageError) as caught:
        catalog.decode(_wire(entry, {**payload, field: [[]]}))  # no field accepts a nested list
    assert caught.value.message_type == entry.type
    assert caught.value.field is not None
    assert caught.value.field.split(".")[0] == field


def test_nested_wrong_type_names_the_full_path() -> None:
    entry = catalog.entry("CreateProject")
    payload = {
        "project_id": str(uuid4()),
        "name": "Apollo",
        "policy": {"approvers": ["key:ada"], "required_approvals": "many"},
    }
    with pytest.raises(InvalidMessageError) as caught:
        catalog.decode(_wire(entry, payload))
    assert caught.value.field == "policy.required_approvals"


def test_unreachable_quorum_is_invalid() -> None:
    entry = catalog.entry("CreateProject")
    payload = {
        "project_id": str(uuid4()),
        "name": "Apollo",
        "policy": {"approvers": ["key:ada"], "required_approvals": 2},
    }
    with pytest.raises(InvalidMessageError, match="required_approvals exceeds") as caught:
        catalog.decode(_wire(entry, payload))
    assert caught.value.field == "policy"


def test_duplicate_step_ids_are_invalid() -> None:
    step = {"kind": "human", "step_id": str(uuid4()), "title": "t", "assignee": "key:a"}
    payload = {
        "plan_id": str(uuid4()),
        "project_id": str(uuid4()),
        "title": "Launch",
        "steps": [{**step, "instructions": "x"}, {**step, "instructions": "y"}],
    }
    with pytest.raises(InvalidMessageError, match="distinct") as caught:
        catalog.decode(_wire(catalog.entry("DraftPlan"), payload))
    assert caught.value.field == "steps"


def test_unknown_type_raises_unknown_message_type() -> None:
    wire = _wire(catalog.entry("SubmitPlan"), {"plan_id": str(uuid4())}, type="LaunchRockets")
    with pytest.raises(UnknownMessageTypeError) as caught:
        catalog.decode(json.dumps(wire))
    assert caught.value.message_type == "LaunchRockets"
    assert caught.value.field == "type"


@pytest.mark.parametrize("version", [0, 2, 99])
def test_unknown_version_raises_unknown_schema_version(version: int) -> None:
    wire = _wire(catalog.entry("SubmitPlan"), {"plan_id": str(uuid4())}, version=version)
    with pytest.raises(UnknownSchemaVersionError) as caught:
        catalog.decode(json.dumps(wire).encode())
    assert caught.value.message_type == "SubmitPlan"
    assert caught.value.version == version


def test_extra_envelope_field_names_the_field() -> None:
    wire = _wire(catalog.entry("SubmitPlan"), {"plan_id": str(uuid4())}, colour="blue")
    with pytest.raises(InvalidMessageError) as caught:
        catalog.decode(wire)
    assert (caught.value.message_type, caught.value.field) == ("SubmitPlan", "colour")


def test_routing_keys_are_unique_and_events_route_by_their_module() -> None:
    keys = [entry.routing_key for entry in ENTRIES]
    assert len(keys) == len(set(keys))
    for entry in ENTRIES:
        module = entry.model.__module__.removeprefix("events.")
        if entry.kind == "event":
            assert entry.aggregate == module, entry.type
        else:
            assert entry.routing_key == entry.type


def _defined_message_classes() -> set[type[Message]]:
    found: set[type[Message]] = set()
    for info in pkgutil.iter_modules(events.__path__, prefix="events."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if not issubclass(cls, Command | DomainEvent) or cls in {Command, DomainEvent}:
                continue
            if cls.__module__ == module.__name__:
                found.add(cls)
    return found


def test_every_message_class_under_events_is_in_the_catalog() -> None:
    defined = _defined_message_classes()
    assert len(defined) >= 50  # the walk really found the modules
    assert {cls for cls in defined if catalog.entry_for(cls).model is cls} == defined
    assert {entry.model for entry in ENTRIES} == defined


def test_every_type_is_at_schema_version_one_or_two() -> None:
    assert {entry.version for entry in ENTRIES} == {1, 2}  # test_upcasting reads each v1


@pytest.mark.parametrize(
    "bare",
    ["ana", "ana@example.test", "admin:ana", "key:", "key:a\nb", "KEY:ana", "key:" + "x" * 2_097],
)
def test_a_principal_is_a_namespaced_id(bare: str) -> None:
    payload = {"project_id": str(uuid4()), "member": bare}
    with pytest.raises(InvalidMessageError) as caught:
        catalog.parse_data("AddProjectMember", 1, payload)
    assert caught.value.field == "member"


@pytest.mark.parametrize(
    "principal", ["key:ana", "user:https://id.test/realms/x/ab-12", "persona:aiko", "system:relay"]
)
def test_each_namespace_is_a_principal_and_the_actor_of_one(principal: str) -> None:
    payload = {"project_id": str(uuid4()), "member": principal}
    command = catalog.parse_data("AddProjectMember", 1, payload)
    assert command.member == principal  # type: ignore[attr-defined]
    assert Actor.of(principal).principal == principal


def test_legacy_is_a_principal_but_never_an_actor() -> None:
    payload = {"project_id": str(uuid4()), "member": "legacy:ana"}
    assert catalog.parse_data("AddProjectMember", 1, payload).member == "legacy:ana"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="not a principal id"):
        Actor.of("legacy:ana")


def test_system_only_commands_are_not_public() -> None:
    system_only = {entry.type for entry in ENTRIES if entry.system_only}
    assert system_only == {
        "AutoApprovePlan",
        "ExpirePlan",
        "FailWorkflow",
        "QueueTask",
        "RecordNotificationDelivered",
        "RecordNotificationFailed",
        "RemindApprovers",
        "RequestApprovals",
        "RetryTask",
        "SendNotification",
        "WarnTaskTimeLimit",
    }
    assert all(entry.kind == "command" for entry in ENTRIES if entry.system_only)
    public = {entry.type for entry in ENTRIES if entry.public}
    commands = {entry.type for entry in ENTRIES if entry.kind == "command"}
    assert public == commands - system_only


def test_messages_are_frozen() -> None:
    command = catalog.parse_data("SubmitPlan", 1, {"plan_id": str(uuid4())})
    with pytest.raises(ValidationError):
        command.plan_id = uuid4()  # type: ignore[attr-defined]
    assert isinstance(command.plan_id, UUID)  # type: ignore[attr-defined]
