"""`hisho stack exec` leases: the last invocation out stops what the invocations started."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import psutil

from infra.stack.lease import Leases
from infra.stack.process import PidFile, PidRecord, kill, spawn

if TYPE_CHECKING:
    from pathlib import Path

SLEEP = shutil.which("sleep") or "/bin/sleep"


def _me() -> PidRecord:
    proc = psutil.Process()
    return PidRecord(proc.pid, proc.create_time())


def test_a_single_invocation_stops_what_it_started(tmp_path: Path) -> None:
    leases = Leases(tmp_path / "exec.json")
    leases.take(_me(), ["redis"])
    assert leases.give_back(_me()) == ["redis"]
    assert not (tmp_path / "exec.json").exists()


def test_the_last_live_invocation_stops_what_an_earlier_one_started(tmp_path: Path) -> None:
    leases = Leases(tmp_path / "exec.json")
    other = spawn([SLEEP, "30"], pid_file=PidFile(tmp_path / "o.pid"), log=tmp_path / "o.log")
    try:
        leases.take(other, ["postgres", "redis"])
        leases.take(_me(), [])  # found them running: started nothing itself
        assert leases.give_back(_me()) == []  # the other one still uses them
    finally:
        kill(other)
    assert leases.give_back(other) == ["postgres", "redis"]


def test_a_crashed_invocation_does_not_keep_the_services_up(tmp_path: Path) -> None:
    leases = Leases(tmp_path / "exec.json")
    dead = spawn([SLEEP, "30"], pid_file=PidFile(tmp_path / "d.pid"), log=tmp_path / "d.log")
    leases.take(dead, ["rabbitmq"])
    kill(dead)  # it never gave its lease back
    leases.take(_me(), [])
    assert leases.give_back(_me()) == ["rabbitmq"]
