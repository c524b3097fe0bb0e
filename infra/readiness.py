"""Readiness reporting from a component process to the supervisor that started it.

Like systemd's `sd_notify`: the supervisor passes a pipe's write end in `HISHO_READY_FD`;
a component writes its name and a newline once it is serving. Without the variable (a
component started by hand) this does nothing.
"""

from __future__ import annotations

import os

READY_FD_ENV = "HISHO_READY_FD"


def notify_ready(component: str) -> None:
    """Tell the supervisor, if any, that `component` is ready."""
    fd = os.environ.get(READY_FD_ENV)
    if not fd:
        return
    try:
        os.write(int(fd), f"{component}\n".encode())
    except OSError:
        return  # the supervisor went away; nothing to tell
