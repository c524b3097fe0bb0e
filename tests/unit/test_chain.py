"""The canonical form and the hash-chain links, without services."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.eventlog.chain import GENESIS, canonical_bytes, link_hash
from infra.eventlog.verify import check_link

AGGREGATE = "0b5e7a6c-2f51-4c8e-9a3e-1f2d3c4b5a69"

# Written by hand from the documented canonical form, not produced by the code under test.
GOLDEN = (
    '{"actor":{"id":"u-1","kind":"user"},'
    '"aggregate_id":"0b5e7a6c-2f51-4c8e-9a3e-1f2d3c4b5a69","aggregate_type":"plan",'
    '"aggregate_version":2,"causation_id":null,'
    '"correlation_id":"6f1c2a3b-4d5e-4f60-8172-839405a6b7c8",'
    '"data":{"note":"café 秘書","plan_id":"0b5e7a6c-2f51-4c8e-9a3e-1f2d3c4b5a69",'
    '"steps":[1,2.5,{"a":true,"b":null}]},'
    '"id":"a1b2c3d4-e5f6-4789-abcd-ef0123456789",'
    '"occurred_at":"2025-01-31T09:15:00.000001Z","position":7,'
    '"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",'
    '"type":"PlanSubmitted","version":1}'
).encode()
GOLDEN_HASH = "ea3cb1ec41e33772ece32e8ca76129c17b0924525091539164b43b633cbea778"


def fields(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": UUID("A1B2C3D4-E5F6-4789-ABCD-EF0123456789"),
        "type": "PlanSubmitted",
        "version": 1,
        # 10:15:00.000001 at UTC+1 is 09:15:00.000001Z
        "occurred_at": datetime(2025, 1, 31, 10, 15, 0, 1, tzinfo=timezone(timedelta(hours=1))),
        "aggregate_type": "plan",
        "aggregate_id": AGGREGATE.upper(),
        "aggregate_version": 2,
        "correlation_id": UUID("6f1c2a3b-4d5e-4f60-8172-839405a6b7c8"),
        "causation_id": None,
        "actor": {"kind": "user", "id": "u-1"},
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "data": {
            "steps": [1, 2.5, {"b": None, "a": True}],
            "plan_id": AGGREGATE,
            "note": "café 秘書",
        },
        "position": 7,
    }
    return base | changes


def test_canonical_bytes_match_the_documented_form_byte_for_byte() -> None:
    assert canonical_bytes(fields(), 7) == GOLDEN


def test_link_of_the_golden_event_is_pinned() -> None:
    assert link_hash(GENESIS, GOLDEN).hex() == GOLDEN_HASH
    assert link_hash(GENESIS, GOLDEN) == hashlib.sha256(bytes(32) + GOLDEN).digest()


def test_position_is_part_of_the_hashed_content() -> None:
    assert canonical_bytes(fields(), 7) != canonical_bytes(fields(), 8)


def test_genesis_is_thirty_two_zero_bytes() -> None:
    assert GENESIS == b"\0" * 32


def test_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        canonical_bytes(fields(occurred_at=datetime(2025, 1, 1)), 1)  # noqa: DTZ001


def test_a_short_previous_hash_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        link_hash(b"\0" * 31, GOLDEN)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(data=st.dictionaries(st.text(), json_values, max_size=6))
def test_canonical_bytes_ignore_key_order_and_survive_a_json_round_trip(
    data: dict[str, Any],
) -> None:
    reversed_data = dict(reversed(list(data.items())))
    first = canonical_bytes(fields(data=data), 3)
    assert canonical_bytes(fields(data=reversed_data), 3) == first
    reparsed = json.loads(first)
    reparsed["occurred_at"] = datetime.fromisoformat(reparsed["occurred_at"])
    assert canonical_bytes(reparsed, 3) == first


@given(moment=st.datetimes(timezones=st.just(UTC)))
def test_timestamps_are_utc_with_six_fractional_digits(moment: datetime) -> None:
    doc = json.loads(canonical_bytes(fields(occurred_at=moment), 1))
    text = doc["occurred_at"]
    assert text.endswith("Z")
    assert len(text.split(".")[1]) == 7  # six digits and the Z
    assert datetime.fromisoformat(text) == moment


def chained(count: int) -> list[dict[str, Any]]:
    rows, prev = [], GENESIS
    for position in range(1, count + 1):
        row = fields(aggregate_version=position, position=position, prev_hash=prev)
        row["hash"] = link_hash(prev, canonical_bytes(row, position))
        rows.append(row)
        prev = row["hash"]
    return rows


def first_break(rows: list[dict[str, Any]]) -> int | None:
    expected, prev = 1, GENESIS
    for row in rows:
        broken = check_link(row, expected, prev)
        if broken is not None:
            return broken.position
        expected, prev = expected + 1, row["hash"]
    return None


def test_an_untouched_chain_has_no_break() -> None:
    assert first_break(chained(5)) is None


def test_a_changed_payload_breaks_its_own_position() -> None:
    rows = chained(5)
    rows[2]["data"] = {"tampered": True}
    assert first_break(rows) == 3


def test_a_removed_event_breaks_at_the_missing_position() -> None:
    rows = chained(5)
    del rows[1]
    assert first_break(rows) == 2


def test_two_swapped_events_break_at_the_earlier_position() -> None:
    rows = chained(6)
    rows[1], rows[4] = rows[4] | {"position": 2}, rows[1] | {"position": 5}
    assert first_break(rows) == 2


def test_a_recomputed_hash_does_not_hide_a_change_from_the_next_link() -> None:
    rows = chained(5)
    rows[2]["data"] = {"tampered": True}
    rows[2]["hash"] = link_hash(rows[2]["prev_hash"], canonical_bytes(rows[2], 3))
    assert first_break(rows) == 4
