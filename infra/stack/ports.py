"""Loopback ports of the local stack: which are free, which to use, and `ports.json`."""

from __future__ import annotations

import contextlib
import json
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping
    from pathlib import Path

    from infra.settings import Settings

LOOPBACK = "127.0.0.1"
STREAM_PORT_OFFSET = 4  # the stream listener has no setting of its own: amqp port + 4


def port_is_free(port: int) -> bool:
    """True when a server could listen on 127.0.0.1:`port` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR, so connections in TIME_WAIT do not block them (or us).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def ephemeral_port(exclude: Collection[int] = ()) -> int:
    """A currently free loopback port chosen by the kernel, not one of `exclude`."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port


def preferred_ports(settings: Settings) -> dict[str, int]:
    """Ports to try first: those recorded in `ports.json` if any, else the configured ones."""
    ports = dict(settings.stack_ports)
    ports.setdefault("amqp_stream", ports["amqp"] + STREAM_PORT_OFFSET)
    return ports


def assign_ports(
    preferred: Mapping[str, int],
    keys: Collection[str],
    *,
    held_by_us: Collection[str],
    is_free: Callable[[int], bool] = port_is_free,
    pick: Callable[[Collection[int]], int] = ephemeral_port,
) -> tuple[dict[str, int], dict[str, int]]:
    """Keep each port in `keys` that is free or held by our own process; replace the others.

    Returns all ports, and the replaced ones alone (key -> new port).
    """
    ports = dict(preferred)
    moved: dict[str, int] = {}
    for key in keys:
        taken = {port for other, port in ports.items() if other != key}
        if key in held_by_us or (ports[key] not in taken and is_free(ports[key])):
            continue
        ports[key] = pick(taken | {ports[key]})
        moved[key] = ports[key]
    return ports, moved


def record_ports(path: Path, ports: Mapping[str, int]) -> None:
    """Write the ports in use, for every hisho process (`Settings.stack_ports` reads them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(sorted(ports.items())), indent=2) + "\n")
    tmp.replace(path)


def forget_ports(path: Path) -> None:
    """Remove `ports.json` so the configured ports apply next time."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
