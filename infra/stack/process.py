"""Processes of the local stack: spawn, pid records, ownership checks, stop, readiness."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from pathlib import Path

POLL_INTERVAL = 0.1
_ERROR_LINE = re.compile(r"error|fatal|failed|refused|denied", re.IGNORECASE)
LOG_ROTATE_BYTES = 20 * 1024 * 1024
_BLOCKED = {signal.SIGINT, signal.SIGTERM}

# Children spawned by this process, kept so they are reaped (a zombie would look alive).
_CHILDREN: set[int] = set()
_DEFAULTED = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGPIPE)


class StackError(Exception):
    """The local stack could not do what was asked; the message says why and where to look."""


@dataclass(frozen=True)
class PidRecord:
    """A process we started: its pid and creation time (which tells a reused pid apart)."""

    pid: int
    create_time: float


class PidFile:
    """A JSON pid record under `<stack_dir>/run/`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> PidRecord | None:
        """The recorded process, or None when nothing (readable) is recorded."""
        try:
            raw = json.loads(self.path.read_text())
            return PidRecord(pid=int(raw["pid"]), create_time=float(raw["create_time"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, record: PidRecord) -> None:
        """Record a process atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": record.pid, "create_time": record.create_time}))
        tmp.replace(self.path)

    def remove(self) -> None:
        """Forget the record."""
        self.path.unlink(missing_ok=True)

    def live(self) -> psutil.Process | None:
        """The recorded process if it is still the one we started and not a zombie."""
        record = self.read()
        return None if record is None else owned_process(record)


def _reap(pid: int) -> None:
    if pid not in _CHILDREN:
        return
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        done = pid
    if done == pid:
        _CHILDREN.discard(pid)


def owned_process(record: PidRecord) -> psutil.Process | None:
    """The process behind `record` if it is alive and is the very process we started."""
    _reap(record.pid)
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 0.05:  # noqa: PLR2004  (pid reused)
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(record.pid)  # it may have died after the reap above: a zombie is never left
            return None
    except psutil.Error:
        return None
    return proc


def _is_gone(proc: psutil.Process) -> bool:
    _reap(proc.pid)
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until every process has exited; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not _is_gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
        alive = [p for p in alive if not _is_gone(p)]
    return alive


def _family(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def _sigkill(procs: Sequence[psutil.Process], group: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(group, signal.SIGKILL)  # the session spawn() created (setsid)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()  # psutil checks the pid was not reused since we looked it up


def stop(record: PidRecord, *, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
    """Stop a process we started and everything below it; SIGKILL after `timeout`.

    Returns False when the record no longer names a live process of ours.
    """
    proc = owned_process(record)
    if proc is None:
        return False
    family = _family(proc)
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)
    _wait_gone(family[:1], timeout)
    leftovers = [p for p in family if not _is_gone(p)]
    if leftovers:
        _sigkill(leftovers, record.pid)
    if _wait_gone(leftovers, 10.0):
        raise StackError(f"process {record.pid} survived SIGKILL")
    return True


def kill(record: PidRecord) -> bool:
    """SIGKILL a process we started and everything below it (a simulated crash)."""
    proc = owned_process(record)
    if proc is None:
        return False
    family = _family(proc)
    _sigkill(family, record.pid)
    if _wait_gone(family, 10.0):
        raise StackError(f"process {record.pid} survived SIGKILL")
    return True


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM so a process is never spawned without its pid being recorded."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _rotate(log: Path) -> None:
    with contextlib.suppress(OSError):
        if log.stat().st_size > LOG_ROTATE_BYTES:
            log.replace(log.with_suffix(log.suffix + ".1"))


def spawn(
    argv: Sequence[str],
    *,
    pid_file: PidFile,
    log: Path,
    env: Mapping[str, str] | None = None,
) -> PidRecord:
    """Start `argv` in a session of its own, output appended to `log`, and record its pid.

    posix_spawn sets the child's signal mask and dispositions explicitly, so the signals we
    hold back here (to record the pid before any handler runs) reach the server later.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    _rotate(log)
    with _signals_deferred(), log.open("ab") as out:
        try:
            pid = os.posix_spawn(
                argv[0],
                list(argv),
                dict(os.environ if env is None else env),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                    (os.POSIX_SPAWN_DUP2, out.fileno(), 2),
                ],
                setsid=True,
                setsigmask=(),
                setsigdef=_DEFAULTED,
            )
        except OSError as exc:
            raise StackError(f"cannot start {argv[0]}: {exc}") from exc
        _CHILDREN.add(pid)
        record = PidRecord(pid, psutil.Process(pid).create_time())
        pid_file.write(record)
    return record


def tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a text file ('' when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * max(lines, 1) - 4096))
            data = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:]) if lines > 0 else ""


def _excerpt(log: Path, since: int) -> str:
    """The error lines written to `log` since offset `since`, else its last lines."""
    try:
        with log.open("rb") as handle:
            handle.seek(since if since <= log.stat().st_size else 0)  # it may have rotated
            lines = handle.read(4 * 1024 * 1024).decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if _ERROR_LINE.search(line)]
    return "\n".join(errors[:12] if errors else lines[-20:])


def wait_ready(
    probe: Callable[[], bool],
    *,
    record: PidRecord,
    name: str,
    log: Path,
    timeout: float,
    since: int = 0,
) -> None:
    """Poll `probe` until it passes; fail fast if the process dies, or at the deadline."""
    deadline = time.monotonic() + timeout
    while not probe():
        if owned_process(record) is None:
            excerpt = _excerpt(log, since)
            raise StackError(f"{name} exited during start-up; see {log}\n{excerpt}")
        if time.monotonic() > deadline:
            raise StackError(f"{name} was not ready after {timeout:.0f}s; see {log}")
        time.sleep(POLL_INTERVAL)


def ensure_running(
    argv: Sequence[str],
    *,
    name: str,
    pid_file: PidFile,
    log: Path,
    probe: Callable[[], bool],
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Start `argv` unless our recorded process lives; wait until `probe` passes.

    Returns True when this call started the process. A process this call started and that
    never became ready is killed before the error is raised.
    """
    record = pid_file.read()
    if record is not None and owned_process(record) is not None:
        wait_ready(probe, record=record, name=name, log=log, timeout=timeout)
        return False
    pid_file.remove()  # stale: the process died or the pid now belongs to someone else
    since = log.stat().st_size if log.exists() else 0
    record = spawn(argv, pid_file=pid_file, log=log, env=env)
    try:
        wait_ready(probe, record=record, name=name, log=log, timeout=timeout, since=since)
    except StackError:
        kill(record)
        pid_file.remove()
        raise
    return True
