"""Redis 7 without persistence: hisho keeps only short-lived state there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.stack.probes import redis_ping
from infra.stack.process import StackError, ensure_running

if TYPE_CHECKING:
    from collections.abc import Mapping

    from infra.stack.install import Binaries
    from infra.stack.layout import StackLayout

START_TIMEOUT = 20.0


class Redis:
    """One `redis-server` in the foreground, logging to stdout (our log file)."""

    name = "redis"
    port_key = "redis"
    port_owners: Mapping[str, str] = {"redis": "redis"}
    processes: tuple[str, ...] = ("redis",)
    stop_signals: Mapping[str, int] = {}

    def __init__(self, layout: StackLayout) -> None:
        self.layout = layout

    def start(self, ports: Mapping[str, int], binaries: Binaries) -> bool:
        """Start redis-server unless it runs; wait until it answers PING."""
        if binaries.redis_server is None:
            raise StackError("redis-server is missing")
        port = ports["redis"]
        workdir = self.layout.data(self.name)
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [str(binaries.redis_server), "--bind", "127.0.0.1", "--port", str(port)]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        argv += ["--dir", str(workdir), "--logfile", "", "--protected-mode", "yes"]
        return ensure_running(
            argv,
            name="redis",
            pid_file=self.layout.pid_file("redis"),
            log=self.layout.log("redis"),
            probe=lambda: redis_ping(port),
            timeout=START_TIMEOUT,
        )

    def healthy(self, ports: Mapping[str, int]) -> bool:
        """True when the server answers PING."""
        return redis_ping(ports["redis"])
