"""The parked-message console's pure parts, and the framework's record of a parking, on fakes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from events import catalog
from infra.consumers import Runner
from infra.consumers.declaration import Parked
from infra.consumers.parking import parked_id, parked_row, storable_text
from infra.consumers.runtime import Settlement
from infra.db.parked import ParkedRecord
from infra.db.parked_tables import PARKED_MESSAGES
from infra.parked import ParkedInputError, decode_cursor, encode_cursor, parse_age
from tests.consumer_support import Failures, demo_consumer, task_retried
from tests.fakes import FakeDatabase, FakeUnitOfWork
from tests.ingress_fakes import ADMIN, READER, FakedIngress
from tests.ingress_support import IngressKeys, ingress_client

if TYPE_CHECKING:
    from infra.db.uow import UnitOfWork

PARK = Settlement(
    "park", "hisho.dead", "demo", "unexpected error: ValueError: x", "ValueError", "demo"
)


def test_ages_read_as_durations_and_anything_else_is_refused() -> None:
    assert parse_age("90s", option="older-than") == timedelta(seconds=90)
    assert parse_age("2h", option="older-than") == timedelta(hours=2)
    assert parse_age("1w", option="older-than") == timedelta(weeks=1)
    for bad in ("x", "", "2", "h", "-1d", "1.5h", "2 days", "1y", "9999999d"):
        with pytest.raises(ParkedInputError, match="older-than"):
            parse_age(bad, option="older-than")
    with pytest.raises(ParkedInputError, match="100 years"):
        parse_age("999999w", option="older-than")


def _record(message_id: str) -> ParkedRecord:
    at = datetime(2026, 5, 13, 12, 0, tzinfo=UTC)
    return ParkedRecord(
        "demo", message_id, "task.retried", None, "ValueError", "r", at, "parked", None, None,
        "", "hisho.demo", "hisho.demo.parked",
    )  # fmt: skip


def test_a_cursor_comes_back_as_the_row_it_was_made_from_and_garbage_is_refused() -> None:
    record = _record("m-1")
    assert decode_cursor(encode_cursor(record)) == (record.parked_at, "demo", "m-1")
    for bad in ("", "not-a-cursor", "bm90LWEtY3Vyc29y", "W10", "WzEsMiwzXQ"):
        with pytest.raises(ParkedInputError, match="cursor"):
            decode_cursor(bad)


def test_a_parked_message_is_known_by_its_message_id_else_its_envelope_id_else_its_hash() -> None:
    envelope = task_retried(uuid.uuid4(), 1)
    body = catalog.encode(envelope)
    assert parked_id("amqp-id", body) == "amqp-id"
    assert parked_id(None, body) == str(envelope.id)
    assert parked_id("bad\x00id", body) == str(envelope.id)
    assert parked_id(None, b"garbage").startswith("sha256:")
    assert parked_id(None, b"garbage") == parked_id("", b"garbage")


def test_the_record_keeps_text_postgresql_can_store_and_json_headers_only() -> None:
    consumer = demo_consumer(Failures())
    settlement = Settlement(
        "park", "hisho.dead", "demo", "bad \x00 \ud800 here", "ValueError", "demo"
    )
    headers = {"partition_slot": 7, "x-bytes": b"\x00", "x-text": "a\x00b"}
    row = PARKED_MESSAGES.record(
        parked_row(consumer, Parked(b"garbage", None, "task.retried", settlement), headers)
    )
    assert row["reason"] == storable_text("bad \x00 \ud800 here") == "bad \\x00 \\ud800 here"
    stored = json.loads(row["headers"])
    assert stored["partition_slot"] == 7
    assert stored["x-text"] == "a\\x00b"
    assert "x-bytes" not in stored
    assert (row["routing_key"], row["message_type"], row["state"]) == (
        "task.retried",
        None,
        "parked",
    )
    assert (row["redrive_exchange"], row["redrive_routing_key"]) == ("", "hisho.demo")


async def test_the_framework_records_every_parking_in_the_parking_unit() -> None:
    db = FakeDatabase()
    runner = Runner(demo_consumer(Failures()), lambda: FakeUnitOfWork(db=db))
    envelope = task_retried(uuid.uuid4(), 1)
    await runner.parking(catalog.encode(envelope), {}, str(envelope.id), "task.retried", PARK)
    (row,) = db.table(PARKED_MESSAGES)
    assert (row["consumer"], row["message_id"], row["state"]) == (
        "demo",
        str(envelope.id),
        "parked",
    )
    assert row["message_type"] == "TaskRetried"
    again = Settlement("park", "hisho.dead", "demo", "again", "KeyError", "demo")
    await runner.parking(catalog.encode(envelope), {}, str(envelope.id), "task.retried", again)
    (row,) = db.table(PARKED_MESSAGES)  # parked again: the same row, replaced
    assert (row["error_type"], row["reason"]) == ("KeyError", "again")
    retry = Settlement("retry", "hisho.retry", "demo.200ms", "later", "ConnectionError", "demo")
    await runner.parking(catalog.encode(task_retried(uuid.uuid4(), 1)), {}, None, None, retry)
    assert len(db.table(PARKED_MESSAGES)) == 1  # a retry is no parking


async def test_a_parking_that_cannot_be_recorded_is_not_carried_out() -> None:
    def down() -> UnitOfWork:
        raise ConnectionRefusedError("database down")

    runner = Runner(demo_consumer(Failures()), down)
    assert runner.policy.on_park is not None  # every consumer records its parkings
    with pytest.raises(ConnectionRefusedError):
        await runner.parking(b"{}", {}, None, None, PARK)


async def test_the_http_console_needs_the_admin_scope_and_says_when_it_is_not_configured() -> None:
    async with ingress_client(FakedIngress().app) as http:
        assert (await http.get("/v1/parked")).status_code == 401
        refused = await http.get("/v1/parked", headers=IngressKeys.bearer(READER))
        assert refused.status_code == 403
        unconfigured = await http.get("/v1/parked", headers=IngressKeys.bearer(ADMIN))
        assert unconfigured.status_code == 503
        assert unconfigured.headers["content-type"] == "application/problem+json"
        bad = await http.get(
            "/v1/parked", params={"older_than": "x"}, headers=IngressKeys.bearer(ADMIN)
        )
        assert bad.status_code == 422
        paths = (await http.get("/openapi.json")).json()["paths"]
        assert {"get"} <= set(paths["/v1/parked"])
        assert {"get", "delete"} <= set(paths["/v1/parked/{message_id}"])
        assert {"post"} == set(paths["/v1/parked/redrive"])
        assert {"post"} == set(paths["/v1/parked/{message_id}/redrive"])
