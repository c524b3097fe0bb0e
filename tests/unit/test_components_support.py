"""The e2e tiers' component runner: a component that hangs on SIGTERM fails the exit-code check."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from tests.components_support import Components

if TYPE_CHECKING:
    from pathlib import Path

_HANGS_ON_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ignoring', flush=True); time.sleep(60)"
)
_EXITS_0_ON_SIGTERM = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
    "print('handling', flush=True); time.sleep(60)"
)


def _started(code: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.readline()  # its signal handling is in place
    return process


def test_a_component_that_hangs_on_sigterm_is_reported_with_the_sigkill_that_ended_it(
    tmp_path: Path,
) -> None:
    running = Components(env={}, log_dir=tmp_path, stop_deadline=1.0)
    running.processes["hung"] = _started(_HANGS_ON_SIGTERM)
    running.processes["clean"] = _started(_EXITS_0_ON_SIGTERM)
    codes = running.stop_all()
    assert codes == {"hung": -signal.SIGKILL, "clean": 0}
    assert not set(codes.values()) <= {0}  # the check the e2e tests make now fails
    assert running.processes == {}
