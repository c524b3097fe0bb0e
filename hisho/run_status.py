"""What `hisho up` is running, in a small JSON file that `hisho status` reads.

The supervisor rewrites the file (atomically: a temporary file, then rename) whenever a
component starts, reports ready or exits, and removes it when it stops. The file is
`<stack dir>/run/up-<ingress port>.json`: two `hisho up` on one stack dir (tests beside a
user's) never share an ingress port. A file whose supervisor process is gone (it was killed)
says nothing is running.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import psutil

from infra.stack.process import PidRecord, owned_process

if TYPE_CHECKING:
    from pathlib import Path

    from infra.settings import Settings


def status_path(settings: Settings) -> Path:
    """Where the `hisho up` of these settings records what it runs."""
    return settings.stack_dir / "run" / f"up-{settings.ingress_port}.json"


@dataclass(frozen=True)
class ComponentStatus:
    """One supervised process: what runs, since when, how often it was restarted."""

    name: str
    component: str
    pid: int | None
    up_since: str | None  # ISO-8601 UTC start of the current process
    restarts: int
    ready: bool


@dataclass(frozen=True)
class UpStatus:
    """The supervisor and its components."""

    pid: int
    create_time: float
    started_at: str
    components: list[ComponentStatus]


def write_status(path: Path, status: UpStatus) -> None:
    """Replace the file atomically: a reader sees the old content or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(status), indent=1))
    tmp.replace(path)


def supervisor_record() -> PidRecord:
    """The calling process, as the status file names its supervisor."""
    return PidRecord(os.getpid(), psutil.Process().create_time())


def read_status(path: Path) -> UpStatus | None:
    """The recorded status if its supervisor still runs, else None (no file, or a stale one)."""
    try:
        raw = json.loads(path.read_text())
        status = UpStatus(
            pid=int(raw["pid"]),
            create_time=float(raw["create_time"]),
            started_at=str(raw["started_at"]),
            components=[ComponentStatus(**item) for item in raw["components"]],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if owned_process(PidRecord(status.pid, status.create_time)) is None:
        return None
    return status
