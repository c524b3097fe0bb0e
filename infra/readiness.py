"""Readiness reporting from a component process to the supervisor that started it.

Like systemd's `sd_notify`: the supervisor passes a pipe's write end in `HISHO_READY_FD`;
a component writes a line, its name and process id (`relay 4242`), once it is serving. The
pid tells the supervisor which process is ready when a component runs more than once or was
just restarted. Without the variable (a component started by hand) this does nothing.
"""

from __future__ import annotations

import os

READY_FD_ENV = "HISHO_READY_FD"


def notify_ready(component: str) -> None:
    """Tell the supervisor, if any, that `component` (this process) is ready."""
    fd = os.environ.get(READY_FD_ENV)
    if not fd:
        return
    try:
        os.write(int(fd), f"{component} {os.getpid()}\n".encode())
    except OSError:
        return  # the supervisor went away; nothing to tell
