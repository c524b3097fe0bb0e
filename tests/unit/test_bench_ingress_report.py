"""bench/ingress.py's arithmetic: reading wrk's output and the report's ratios (no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.ingress import wrk_command, wrk_script
from bench.ingress_report import Measured, Totals, WrkResult, parse_wrk, report

# A real run of wrk 4.1.0 with the bench's Lua script (the last line is its `done()` hook).
WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:47123/v1/commands/SubmitPlan
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.37ms    5.05ms  35.83ms   68.28%
    Req/Sec     0.97k   485.99     2.05k    80.00%
  982 requests in 1.02s, 239.88KB read
Requests/sec:    966.92
Transfer/sec:    236.19KB
hisho-bench requests=982 duration_us=1015597 status_errors=12 connect_errors=1 read_errors=2 \
write_errors=0 timeouts=3 p50_us=8115 p99_us=23053
"""


def test_the_summary_line_of_wrk_is_read_into_counts_seconds_and_milliseconds() -> None:
    assert parse_wrk(WRK_OUTPUT) == WrkResult(
        requests=982,
        seconds=1.015597,
        status_errors=12,
        socket_errors=6,
        p50_ms=8.115,
        p99_ms=23.053,
    )
    assert parse_wrk(WRK_OUTPUT).accepted == 970


def test_wrk_output_without_the_summary_line_stops_the_bench() -> None:
    with pytest.raises(SystemExit, match="no summary line"):
        parse_wrk(WRK_OUTPUT.rsplit("hisho-bench", 1)[0])


def test_the_lua_script_posts_json_with_the_key_and_a_valid_uuid_per_request() -> None:
    script = wrk_script("hisho_0123456789abcdef_secret")
    assert 'wrk.headers["Authorization"] = "Bearer hisho_0123456789abcdef_secret"' in script
    assert 'wrk.method = "POST"' in script
    prefix = script.split('{"plan_id":"', 1)[1].split("-%012x", 1)[0]
    assert [len(part) for part in prefix.split("-")] == [8, 4, 4, 4]
    assert "$" not in script  # every placeholder was filled


def test_the_wrk_command_is_one_thread_bounded_in_time_on_the_given_url() -> None:
    command = wrk_command("/usr/bin/wrk", Path("s.lua"), "http://127.0.0.1:9", 32, 10)
    assert command == [
        "/usr/bin/wrk", "-t1", "-c32", "-d10s", "--timeout", "10s",
        "-s", "s.lua", "http://127.0.0.1:9/v1/commands/SubmitPlan",
    ]  # fmt: skip


def run(kind: str, requests: int, seconds: float, server_cpu: float, **wrk: int) -> Measured:
    """A measured run with round numbers."""
    result = WrkResult(
        requests=requests,
        seconds=seconds,
        status_errors=wrk.get("status_errors", 0),
        socket_errors=0,
        p50_ms=wrk.get("p50", 5),
        p99_ms=wrk.get("p99", 20),
    )
    return Measured(kind, result, server_cpu, client_cpu=seconds * 0.1)


def test_totals_are_sums_over_time_not_means_of_rates() -> None:
    totals = Totals.of([run("bare", 10_000, 10, 9.5, p50=4), run("bare", 30_000, 10, 10, p50=6)])
    assert totals.rate == 2_000
    assert totals.cpu_per_request_us == pytest.approx(487.5)
    assert totals.cores == pytest.approx(0.975)
    assert totals.client_cpu_per_request_us == pytest.approx(50)
    assert (totals.p50_ms, totals.p99_ms) == (6, 20)


def test_the_report_gives_both_ratios_and_the_bare_endpoints_cores() -> None:
    lines = report(
        {
            "bare": [run("bare", 20_000, 10, 10.0)],  # 2,000/s at 500 us: 1.00 core
            "ingress": [run("ingress", 7_000, 10, 9.8, status_errors=1_000)],  # 600/s, 1,400 us
        }
    )
    assert lines[1].split()[:4] == ["bare", "1", "20000", "0"]
    assert lines[2].split()[:4] == ["ingress", "1", "6000", "1000"]
    assert (
        lines[3] == "throughput ratio ingress/bare: 0.30 (rounds: 0.30) - MISSES the >= 0.6 target"
    )
    assert lines[4] == (
        "CPU-per-request ratio ingress/bare: 0.36 (bare 500 us / ingress 1400 us: the ingress "
        "spends 2.80x the CPU) - MISSES the >= 0.6 target"
    )
    assert lines[5] == (
        "bare endpoint: 500 us CPU per request x 2000/s = 1.00 core (saturated; wrk used 0.10 core)"
    )
    assert lines[6] == (
        "ingress: 1400 us CPU per request x 600/s = 0.98 core (saturated; wrk used 0.10 core)"
    )


def test_the_report_says_when_the_target_is_met_and_when_the_bare_endpoint_is_not_saturated() -> (
    None
):
    lines = report(
        {"bare": [run("bare", 10_000, 10, 5.0)], "ingress": [run("ingress", 8_000, 10, 4.8)]}
    )
    assert lines[3].endswith("0.80 (rounds: 0.80) - meets the >= 0.6 target")
    assert "0.83 (bare 500 us / ingress 600 us" in lines[4]
    assert lines[4].endswith("meets the >= 0.6 target")
    assert "= 0.50 core (NOT saturated;" in lines[5]


def test_no_ratio_when_a_server_completed_nothing() -> None:
    lines = report({"bare": [run("bare", 0, 10, 0.0)], "ingress": [run("ingress", 10, 10, 1.0)]})
    assert lines[-1] == "no ratio: a server completed no request"


def test_the_stacks_cpu_per_request_is_reported_per_server_with_the_cores_used_in_all() -> None:
    bare = run("bare", 20_000, 10, 10.0)
    ingress = Measured(
        "ingress",
        run("ingress", 5_000, 10, 8.0).wrk,
        server_cpu=8.0,
        client_cpu=0.5,
        stack_cpu={"postgres": 0.05, "rabbitmq": 6.0, "redis": 0.25},
    )
    lines = report({"bare": [bare], "ingress": [ingress]})
    assert lines[3] == (
        "  stack CPU us/req under ingress: postgres 10, rabbitmq 1200, redis 50;"
        " cores used in all: 1.48"
    )
    assert lines[4].startswith("  (the stack's servers serve every client")
    assert lines[5].startswith("throughput ratio ingress/bare: 0.25")
