"""bench/processor_latency.py's pure parts: the requests it writes, the story mix's figures."""

from __future__ import annotations

from bench.processor_latency import EVENT, StoryReport, request_bytes, story_latencies
from tests.stories import Accepted


def test_a_post_carries_its_headers_and_length_and_a_get_no_length() -> None:
    post = request_bytes("POST", "/v1/commands/SubmitPlan", "127.0.0.1:8080", {"A": "1"}, b"{}")
    assert post == (
        b"POST /v1/commands/SubmitPlan HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nA: 1\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    get = request_bytes("GET", "/v1/commands/x", "h", {}, None)
    assert get == b"GET /v1/commands/x HTTP/1.1\r\nHost: h\r\n\r\n"


def test_story_latencies_run_from_the_post_and_skip_what_has_no_figure() -> None:
    accepted = [
        Accepted("a", "DraftPlan", 1, posted_at=10.0, answered_at=10.004),
        Accepted("b", "SubmitPlan", 1, posted_at=10.005, answered_at=10.006),
    ]
    found = story_latencies(accepted, {"a": 10.010, "b": 10.025}, {"a": 10.020})
    rounded = {name: [round(ms, 3) for ms in values] for name, values in found.items()}
    assert rounded == {
        "POST -> 202": [4.0, 1.0],
        "POST -> decided": [10.0, 20.0],
        EVENT: [20.0],
        f"{EVENT}, DraftPlan": [20.0],
    }


def test_the_story_report_names_the_target_verdict_without_asserting_it() -> None:
    def report(event_ms: list[float]) -> StoryReport:
        return StoryReport(
            rate=200,
            duration=1,
            stories=1,
            accepted=5,
            achieved_rate=5,
            errors=[],
            status_reads=2,
            outcomes={"processed": 5},
            clock="commit timestamps",
            latencies={"POST -> 202": [1.0], "POST -> decided": [2.0], EVENT: event_ms},
            cpu_ms_per_command={"ingress": 1.5},
        )

    fast, slow = dict(report([50.0, 90.0]).rows()), dict(report([50.0, 150.0]).rows())
    assert fast[f"{EVENT} p99"] == "90.0 ms (target <= 100: met)"
    assert slow[f"{EVENT} p99"] == "150.0 ms (target <= 100: MISSED)"
    assert fast["status GETs per command"] == "0.40"
    assert fast["CPU ms per command: ingress"] == "1.50"
