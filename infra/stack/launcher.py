"""`Stack`: the private RabbitMQ, PostgreSQL and Redis of one stack directory."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import psutil
import structlog

from infra.stack.install import Binaries, ensure_installed, find_binaries
from infra.stack.layout import StackLayout
from infra.stack.lease import Leases
from infra.stack.ports import assign_ports, forget_ports, preferred_ports, record_ports
from infra.stack.postgres import Postgres
from infra.stack.process import PidRecord, StackError, kill, stop
from infra.stack.rabbitmq import RabbitMQ
from infra.stack.redis import Redis

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Collection, Iterator, Mapping
    from pathlib import Path

    from infra.settings import Settings

log = structlog.get_logger()

SERVICES = ("rabbitmq", "postgres", "redis")
STOP_TIMEOUT = 30.0
Health = Literal["running", "stopped", "unhealthy"]


class Service(Protocol):
    """One server of the stack, made of one or more recorded processes."""

    name: str
    port_key: str
    port_owners: Mapping[str, str]
    processes: tuple[str, ...]
    stop_signals: Mapping[str, int]

    def start(self, ports: Mapping[str, int], binaries: Binaries) -> bool:
        """Start what is not running and wait until ready; True if anything was started."""
        ...

    def healthy(self, ports: Mapping[str, int]) -> bool:
        """A real protocol check against the server."""
        ...


@dataclass(frozen=True)
class ServiceStatus:
    """What `status` knows about one service."""

    name: str
    port: int
    pid: int | None
    health: Health
    log: Path


class Stack:
    """Start, stop and inspect one private stack. Synchronous (it blocks while servers boot).

    From async code run the slow calls in a thread: `await asyncio.to_thread(stack.up)`.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.layout = StackLayout(settings.stack_dir)
        self._rabbitmq = RabbitMQ(self.layout)
        self._services: dict[str, Service] = {
            "rabbitmq": self._rabbitmq,
            "postgres": Postgres(self.layout),
            "redis": Redis(self.layout),
        }
        self._leases = Leases(self.layout.exec_file)

    @property
    def ports(self) -> dict[str, int]:
        """Ports in use (from `ports.json`), else those the stack would try first."""
        return preferred_ports(self.settings)

    def _names(self, services: Collection[str] | None) -> list[str]:
        names = list(SERVICES) if services is None else list(services)
        if unknown := sorted(set(names) - set(SERVICES)):
            raise StackError(f"unknown service {', '.join(unknown)}; known: {', '.join(SERVICES)}")
        return [name for name in SERVICES if name in names]

    def _live(self, name: str) -> psutil.Process | None:
        return self.layout.pid_file(self._services[name].processes[0]).live()

    def up(self, services: Collection[str] | None = None) -> list[str]:
        """Start every service (or those named) that is not running; return those started."""
        with self.layout.locked():
            return self._up(self._names(services))

    def _up(self, names: list[str]) -> list[str]:
        binaries = ensure_installed(names)
        return [name for name in names if self._start(name, binaries)]

    def _start(self, name: str, binaries: Binaries) -> bool:
        service = self._services[name]
        held = {
            key for key, proc in service.port_owners.items() if self.layout.pid_file(proc).live()
        }
        ports, moved = assign_ports(self.ports, service.port_owners, held_by_us=held)
        for key, port in moved.items():
            log.warning("stack.port_taken", service=name, port_name=key, using=port)
        record_ports(self.layout.ports_file, ports)
        started = service.start(ports, binaries)
        if started:
            log.info("stack.started", service=name, port=ports[service.port_key])
        return started

    def start_service(self, name: str) -> bool:
        """Start one service (on the port it had, if still free); True if it was started."""
        return bool(self.up([name]))

    def stop_service(self, name: str) -> bool:
        """Stop one service gracefully (SIGKILL after a deadline); True if it was running."""
        with self.layout.locked():
            return self._stop(self._names([name])[0])

    def kill_service(self, name: str) -> bool:
        """SIGKILL one service's server process tree, like a crash; True if it was running.

        RabbitMQ's epmd survives, as it would when only the broker crashes. The pid record
        stays, as after a real crash: `crashed()` reports the service.
        """
        with self.layout.locked():
            service = self._services[self._names([name])[0]]
            record = self.layout.pid_file(service.processes[0]).read()
            return record is not None and kill(record)

    def crashed(self, services: Collection[str]) -> list[str]:
        """Those of `services` with a recorded process that is gone (reaping it if ours).

        A service stopped on purpose (`down`, `stop_service`) has no record left: not crashed.
        """
        processes = {name: self._services[name].processes for name in self._names(services)}
        return [name for name, procs in processes.items() if any(map(self._gone, procs))]

    def _gone(self, process: str) -> bool:
        pid_file = self.layout.pid_file(process)
        return pid_file.read() is not None and pid_file.live() is None

    def _stop(self, name: str) -> bool:
        service = self._services[name]
        stopped = False
        for proc in service.processes:
            pid_file = self.layout.pid_file(proc)
            record = pid_file.read()
            if record is not None:
                sig = service.stop_signals.get(proc, signal.SIGTERM)
                stopped |= stop(record, sig=sig, timeout=STOP_TIMEOUT)
            pid_file.remove()
        if stopped:
            log.info("stack.stopped", service=name)
        return stopped

    def down(self, services: Collection[str] | None = None) -> list[str]:
        """Stop every service (or those named); forget `ports.json` once nothing runs."""
        with self.layout.locked():
            return self._down(self._names(services), everything=services is None)

    def _down(self, names: list[str], *, everything: bool = False) -> list[str]:
        stopped = [name for name in names if self._stop(name)]
        if all(self._live(name) is None for name in SERVICES):
            forget_ports(self.layout.ports_file)
        if everything:
            self._leases.clear()
        return stopped

    def status(self) -> list[ServiceStatus]:
        """Each service with its port, pid and health."""
        ports = self.ports
        result = []
        for name, service in self._services.items():
            proc = self._live(name)
            health: Health = "stopped"
            if proc is not None:
                health = "running" if service.healthy(ports) else "unhealthy"
            port = ports[service.port_key]
            pid = proc.pid if proc is not None else None
            result.append(ServiceStatus(name, port, pid, health, self.log_path(name)))
        return result

    def pids(self) -> dict[str, int]:
        """Live recorded processes by name (`rabbitmq`, `epmd`, `postgres`, `redis`)."""
        names = [proc for service in self._services.values() for proc in service.processes]
        live = {name: self.layout.pid_file(name).live() for name in names}
        return {name: proc.pid for name, proc in live.items() if proc is not None}

    def log_path(self, name: str) -> Path:
        """The log file of a process (`epmd` and `initdb` included)."""
        return self.layout.log(name)

    def rabbitmqctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run rabbitmqctl against this stack's node, e.g. `stack.rabbitmqctl("list_queues")`."""
        return self._rabbitmq.ctl(self.ports, find_binaries(), *args)

    @contextlib.contextmanager
    def using(self, services: Collection[str] | None = None) -> Iterator[list[str]]:
        """Hold the named services up for a block; stop afterwards those this block started.

        With concurrent blocks on one stack dir, the last one out stops them (see `lease`).
        """
        names = self._names(services)
        me = PidRecord(os.getpid(), psutil.Process().create_time())
        try:
            with self.layout.locked():
                self._leases.take(me, [name for name in names if self._live(name) is None])
                self._up(names)
            yield names
        finally:
            with self.layout.locked():
                self._down(self._leases.give_back(me))
