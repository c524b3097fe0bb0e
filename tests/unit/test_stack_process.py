"""Pid records, ownership checks, stopping and readiness of processes the stack starts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psutil
import pytest

from infra.stack.process import (
    PidFile,
    PidRecord,
    StackError,
    kill,
    owned_process,
    spawn,
    stop,
    wait_ready,
)

SH = shutil.which("sh") or "/bin/sh"
SLEEP = shutil.which("sleep") or "/bin/sleep"


@pytest.fixture
def pid_file(tmp_path: Path) -> PidFile:
    return PidFile(tmp_path / "run" / "x.pid")


def _blocked_signals(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line")


def test_a_spawned_process_is_recorded_owned_and_stopped(pid_file: PidFile, tmp_path: Path) -> None:
    record = spawn([SLEEP, "30"], pid_file=pid_file, log=tmp_path / "x.log")
    assert pid_file.read() == record
    proc = pid_file.live()
    assert proc is not None
    assert proc.pid == record.pid
    assert os.getsid(record.pid) == record.pid  # its own session: a terminal's Ctrl-C misses it
    assert _blocked_signals(record.pid) == 0  # SIGTERM will reach it
    assert stop(record, timeout=10)
    assert pid_file.live() is None
    assert not stop(record)  # already gone: nothing of ours to signal


def test_a_record_whose_pid_was_reused_is_not_ours_and_is_never_signalled() -> None:
    me = psutil.Process()
    reused = PidRecord(me.pid, me.create_time() - 1000)
    assert owned_process(reused) is None
    assert not stop(reused)
    assert not kill(reused)
    assert me.is_running()


def test_stop_escalates_to_sigkill_for_a_process_ignoring_sigterm(
    pid_file: PidFile, tmp_path: Path
) -> None:
    script = f"trap '' TERM; {SLEEP} 60 & wait"
    record = spawn([SH, "-c", script], pid_file=pid_file, log=tmp_path / "x.log")
    wait_ready(
        lambda: len(psutil.Process(record.pid).children()) == 1,
        record=record,
        name="sh",
        log=tmp_path / "x.log",
        timeout=10,
    )
    family = [psutil.Process(record.pid), *psutil.Process(record.pid).children()]
    assert stop(record, timeout=0.5)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)


def test_kill_takes_down_the_whole_process_tree(pid_file: PidFile, tmp_path: Path) -> None:
    record = spawn([SH, "-c", f"{SLEEP} 60 & wait"], pid_file=pid_file, log=tmp_path / "x.log")
    wait_ready(
        lambda: len(psutil.Process(record.pid).children()) == 1,
        record=record,
        name="sh",
        log=tmp_path / "x.log",
        timeout=10,
    )
    family = [psutil.Process(record.pid), *psutil.Process(record.pid).children()]
    assert kill(record)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)


def test_a_process_dying_during_start_up_fails_fast_with_its_log(
    pid_file: PidFile, tmp_path: Path
) -> None:
    log = tmp_path / "x.log"
    log.write_text("an old run: ERROR that is not this one\n")
    since = log.stat().st_size
    record = spawn(
        [SH, "-c", "echo starting; echo 'FATAL: boom'; exit 3"], pid_file=pid_file, log=log
    )
    with pytest.raises(StackError, match=r"exited during start-up") as caught:
        wait_ready(lambda: False, record=record, name="x", log=log, timeout=60, since=since)
    assert str(log) in str(caught.value)
    assert "FATAL: boom" in str(caught.value)
    assert "old run" not in str(caught.value)


def test_readiness_has_a_deadline(pid_file: PidFile, tmp_path: Path) -> None:
    record = spawn([SLEEP, "30"], pid_file=pid_file, log=tmp_path / "x.log")
    try:
        with pytest.raises(StackError, match=r"not ready after"):
            wait_ready(lambda: False, record=record, name="x", log=tmp_path / "x.log", timeout=0.3)
    finally:
        kill(record)


def test_an_unreadable_pid_file_reads_as_nothing(pid_file: PidFile) -> None:
    pid_file.path.parent.mkdir(parents=True)
    pid_file.path.write_text("not json")
    assert pid_file.read() is None
    assert pid_file.live() is None
