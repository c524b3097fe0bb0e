"""`hisho status` reads what the running `hisho up` recorded; a stale record means nothing runs."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import psutil
from typer.testing import CliRunner

from hisho.cli import app
from hisho.run_status import (
    ComponentStatus,
    UpStatus,
    read_status,
    status_path,
    supervisor_record,
    write_status,
)
from infra.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

PORT = 48080


def _env(tmp_path: Path) -> dict[str, str]:
    return {"HISHO_STACK_DIR": str(tmp_path), "HISHO_INGRESS_PORT": str(PORT)}


def _path(tmp_path: Path) -> Path:
    return status_path(Settings(stack_dir=tmp_path, ingress_port=PORT))


def _components(*, relay_ready: bool) -> list[ComponentStatus]:
    since = "2026-12-02T17:00:00+00:00"
    return [
        ComponentStatus("ingress", "ingress", 101, since, 0, ready=True),
        ComponentStatus("relay", "relay", 102, since, 1, ready=True),
        ComponentStatus("relay-2", "relay", 103, since, 0, ready=relay_ready),
    ]


def _record(tmp_path: Path, *, relay_ready: bool = True) -> None:
    me = supervisor_record()
    started = "2026-12-02T16:59:00+00:00"
    status = UpStatus(me.pid, me.create_time, started, _components(relay_ready=relay_ready))
    write_status(_path(tmp_path), status)


def test_without_a_record_status_says_in_one_line_that_nothing_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status"], env=_env(tmp_path))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"hisho status: no `hisho up` is running (nothing live in {_path(tmp_path)})"
    ]


def test_a_record_left_by_a_dead_supervisor_means_nothing_runs(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    created = 1.0  # whatever it was, that process is gone
    started = "2026-12-02T16:59:00+00:00"
    status = UpStatus(gone.pid, created, started, _components(relay_ready=True))
    write_status(_path(tmp_path), status)
    assert read_status(_path(tmp_path)) is None
    result = CliRunner().invoke(app, ["status"], env=_env(tmp_path))
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1


def test_a_live_record_shows_each_component_and_exits_0_when_all_are_ready(
    tmp_path: Path,
) -> None:
    _record(tmp_path)
    result = CliRunner().invoke(app, ["status"], env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()[1:4]}
    assert rows["relay"][1:] == ["102", "2026-12-02T17:00:00+00:00", "1", "yes"]
    assert rows["relay-2"][-1] == "yes"
    shown = json.loads(CliRunner().invoke(app, ["status", "--json"], env=_env(tmp_path)).output)
    assert shown["pid"] == psutil.Process().pid
    assert [c["name"] for c in shown["components"]] == ["ingress", "relay", "relay-2"]


def test_a_component_not_ready_makes_status_exit_1(tmp_path: Path) -> None:
    _record(tmp_path, relay_ready=False)
    result = CliRunner().invoke(app, ["status"], env=_env(tmp_path))
    assert result.exit_code == 1
    assert "relay-2" in result.output
