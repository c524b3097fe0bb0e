"""Leases of `hisho stack exec`: the last invocation out stops what any of them started.

Two `exec` runs may share one stack dir (two terminals, CI and a developer). Each holds a
lease (its pid record) while its command runs; services that were not running when an
`exec` began are noted as exec-started. When the last live lease is returned, those are
stopped; a stack started by `hisho stack up` is never noted, so it is left alone. Callers
hold the stack lock.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from infra.stack.process import PidRecord, owned_process

if TYPE_CHECKING:
    from collections.abc import Collection
    from pathlib import Path


class Leases:
    """The `run/exec.json` file: live leases and the services exec runs started."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> tuple[list[PidRecord], set[str]]:
        try:
            raw = json.loads(self.path.read_text())
            leases = [PidRecord(int(x["pid"]), float(x["create_time"])) for x in raw["leases"]]
            return leases, {str(name) for name in raw["started"]}
        except (OSError, ValueError, KeyError, TypeError):
            return [], set()

    def _save(self, leases: list[PidRecord], started: set[str]) -> None:
        if not leases and not started:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "leases": [{"pid": r.pid, "create_time": r.create_time} for r in leases],
            "started": sorted(started),
        }
        self.path.write_text(json.dumps(body))

    def take(self, holder: PidRecord, starting: Collection[str]) -> None:
        """Hold a lease; `starting` are services this invocation is about to start."""
        leases, started = self._load()
        self._save([*leases, holder], started | set(starting))

    def give_back(self, holder: PidRecord) -> list[str]:
        """Return the lease; when no live lease remains, the services to stop now."""
        leases, started = self._load()
        others = [r for r in leases if r != holder and owned_process(r) is not None]
        if others:
            self._save(others, started)
            return []
        self._save([], set())
        return sorted(started)

    def clear(self) -> None:
        """Forget every lease (after a full `down`)."""
        self.path.unlink(missing_ok=True)
