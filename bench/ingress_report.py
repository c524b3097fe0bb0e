"""What bench/ingress.py measures and how it reports it: pure arithmetic, no servers.

`parse_wrk` reads the one summary line the bench's Lua `done()` hook writes;
`report` turns the runs into the table, both ratios and the saturation check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TARGET_RATIO = 0.6
SATURATED_CORES = 0.85  # one server process at >= this share of a core is saturated
_SUMMARY = re.compile(r"^hisho-bench (?P<fields>(?:\w+=\d+ ?)+)$", re.MULTILINE)


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: completed responses, how long, errors and latency quantiles."""

    requests: int
    seconds: float
    status_errors: int  # responses with a status >= 400
    socket_errors: int  # connect, read, write errors and timeouts
    p50_ms: float
    p99_ms: float

    @property
    def accepted(self) -> int:
        """Responses below 400 (both servers answer 202 or an error)."""
        return self.requests - self.status_errors


def parse_wrk(output: str) -> WrkResult:
    """Read the `hisho-bench key=value ...` line of wrk's output; SystemExit if absent."""
    found = _SUMMARY.search(output)
    if found is None:
        raise SystemExit(f"bench: no summary line in wrk's output:\n{output}")
    fields = dict(pair.split("=") for pair in found["fields"].split())
    number = {key: int(value) for key, value in fields.items()}
    sockets = ("connect_errors", "read_errors", "write_errors", "timeouts")
    return WrkResult(
        requests=number["requests"],
        seconds=number["duration_us"] / 1e6,
        status_errors=number["status_errors"],
        socket_errors=sum(number[key] for key in sockets),
        p50_ms=number["p50_us"] / 1e3,
        p99_ms=number["p99_us"] / 1e3,
    )


@dataclass(frozen=True)
class Measured:
    """One server under one wrk run: the run, server CPU and wrk's CPU over it."""

    kind: str
    wrk: WrkResult
    server_cpu: float
    client_cpu: float
    stack_cpu: dict[str, float] = field(default_factory=dict)  # service -> CPU seconds


@dataclass(frozen=True)
class Totals:
    """A server's runs added up."""

    runs: int
    requests: int
    accepted: int
    errors: int
    seconds: float
    server_cpu: float
    client_cpu: float
    p50_ms: float  # the median run's
    p99_ms: float  # the worst run's
    stack_cpu: dict[str, float]

    @classmethod
    def of(cls, runs: list[Measured]) -> Totals:
        """Sum the runs (rates are totals over time, not means of rates)."""
        ordered = sorted(runs, key=lambda run: run.wrk.p50_ms)
        return cls(
            runs=len(runs),
            requests=sum(run.wrk.requests for run in runs),
            accepted=sum(run.wrk.accepted for run in runs),
            errors=sum(run.wrk.status_errors + run.wrk.socket_errors for run in runs),
            seconds=sum(run.wrk.seconds for run in runs),
            server_cpu=sum(run.server_cpu for run in runs),
            client_cpu=sum(run.client_cpu for run in runs),
            p50_ms=ordered[len(ordered) // 2].wrk.p50_ms,
            p99_ms=max(run.wrk.p99_ms for run in runs),
            stack_cpu={
                name: sum(run.stack_cpu.get(name, 0.0) for run in runs)
                for name in sorted({name for run in runs for name in run.stack_cpu})
            },
        )

    @property
    def rate(self) -> float:
        """Accepted (202) per second."""
        return self.accepted / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_request_us(self) -> float:
        """Server CPU microseconds per completed request."""
        return 1e6 * self.server_cpu / self.requests if self.requests else 0.0

    @property
    def cores(self) -> float:
        """Server CPU per request x request rate: the share of cores the server used."""
        return self.server_cpu / self.seconds if self.seconds else 0.0

    @property
    def client_cpu_per_request_us(self) -> float:
        """wrk's CPU microseconds per request."""
        return 1e6 * self.client_cpu / self.requests if self.requests else 0.0


def _verdict(value: float) -> str:
    return "meets" if value >= TARGET_RATIO else "MISSES"


def report(runs: dict[str, list[Measured]]) -> list[str]:
    """The table, both ratios ingress/bare and the bare endpoint's saturation, as lines."""
    totals = {kind: Totals.of(kind_runs) for kind, kind_runs in runs.items() if kind_runs}
    head = (
        "runs",
        "202",
        "errors",
        "202/s",
        "p50 ms",
        "p99 ms",
        "cpu us/req",
        "cores",
        "wrk us/req",
    )
    lines = [f"{'server':8} " + " ".join(f"{name:>10}" for name in head)]
    for kind, t in totals.items():
        cells = (
            f"{t.runs:>10} {t.accepted:>10} {t.errors:>10} {t.rate:>10.0f} {t.p50_ms:>10.1f} "
            f"{t.p99_ms:>10.1f} {t.cpu_per_request_us:>10.0f} {t.cores:>10.2f} "
            f"{t.client_cpu_per_request_us:>10.1f}"
        )
        lines.append(f"{kind:8} {cells}")
    for kind, t in totals.items():
        if t.stack_cpu and t.requests:
            each = ", ".join(f"{n} {1e6 * c / t.requests:.0f}" for n, c in t.stack_cpu.items())
            used = (t.server_cpu + t.client_cpu + sum(t.stack_cpu.values())) / t.seconds
            lines.append(f"  stack CPU us/req under {kind}: {each}; cores used in all: {used:.2f}")
    if any(t.stack_cpu for t in totals.values()):
        lines.append("  (the stack's servers serve every client on the box: others' work counts)")
    bare, ingress = totals.get("bare"), totals.get("ingress")
    if bare is None or ingress is None or not bare.rate or not ingress.cpu_per_request_us:
        return [*lines, "no ratio: a server completed no request"]
    return [*lines, *_ratios(runs, bare, ingress)]


def _ratios(runs: dict[str, list[Measured]], bare: Totals, ingress: Totals) -> list[str]:
    throughput = ingress.rate / bare.rate
    cpu = bare.cpu_per_request_us / ingress.cpu_per_request_us
    rounds = ", ".join(
        f"{i.wrk.accepted / i.wrk.seconds / (b.wrk.accepted / b.wrk.seconds):.2f}"
        for b, i in zip(runs["bare"], runs["ingress"], strict=False)
        if b.wrk.accepted and i.wrk.seconds
    )
    throughput_line = (
        f"throughput ratio ingress/bare: {throughput:.2f} (rounds: {rounds}) - "
        f"{_verdict(throughput)} the >= {TARGET_RATIO} target"
    )
    cpu_line = (
        f"CPU-per-request ratio ingress/bare: {cpu:.2f} (bare {bare.cpu_per_request_us:.0f} us"
        f" / ingress {ingress.cpu_per_request_us:.0f} us: the ingress spends {1 / cpu:.2f}x"
        f" the CPU) - {_verdict(cpu)} the >= {TARGET_RATIO} target"
    )
    return [
        throughput_line,
        cpu_line,
        _saturation(bare, "bare endpoint"),
        _saturation(ingress, "ingress"),
    ]


def _saturation(totals: Totals, name: str = "") -> str:
    saturated = "saturated" if totals.cores >= SATURATED_CORES else "NOT saturated"
    wrk_cores = totals.client_cpu / totals.seconds
    return (
        f"{name}: {totals.cpu_per_request_us:.0f} us CPU per request x {totals.rate:.0f}/s"
        f" = {totals.cores:.2f} core ({saturated}; wrk used {wrk_cores:.2f} core)"
    )
