"""Port choice of the local stack: keep free or own ports, move taken ones, record them."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

from infra.settings import Settings
from infra.stack.ports import (
    STREAM_PORT_OFFSET,
    assign_ports,
    forget_ports,
    port_is_free,
    preferred_ports,
    record_ports,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from pathlib import Path

PREFERRED = {"amqp": 35672, "epmd": 35675, "redis": 36379}


def _picker(*ports: int) -> Callable[[Collection[int]], int]:
    queue = list(ports)

    def pick(exclude: Collection[int]) -> int:
        port = queue.pop(0)
        assert port not in exclude
        return port

    return pick


def test_free_ports_are_kept() -> None:
    ports, moved = assign_ports(PREFERRED, ["amqp", "redis"], held_by_us=(), is_free=lambda _: True)
    assert ports == PREFERRED
    assert moved == {}


def test_a_port_taken_by_someone_else_is_replaced_and_reported() -> None:
    ports, moved = assign_ports(
        PREFERRED,
        ["amqp", "redis"],
        held_by_us=(),
        is_free=lambda port: port != 36379,
        pick=_picker(41000),
    )
    assert moved == {"redis": 41000}
    assert ports == {**PREFERRED, "redis": 41000}


def test_a_port_held_by_our_own_running_process_is_kept() -> None:
    ports, moved = assign_ports(PREFERRED, ["epmd"], held_by_us={"epmd"}, is_free=lambda _: False)
    assert ports["epmd"] == 35675
    assert moved == {}


def test_two_services_never_share_a_port() -> None:
    clash = {"amqp": 40000, "redis": 40000}
    ports, moved = assign_ports(
        clash,
        ["redis"],
        held_by_us=(),
        is_free=lambda _: True,
        pick=_picker(40001),
    )
    assert ports == {"amqp": 40000, "redis": 40001}
    assert moved == {"redis": 40001}


def test_port_is_free_sees_a_listener_on_loopback() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free(port)
    assert port_is_free(port)


def test_recorded_ports_are_what_settings_and_the_launcher_use(tmp_path: Path) -> None:
    settings = Settings(
        stack_dir=tmp_path, stack_amqp_port=41000, stack_redis_port=41001, redis_url=None
    )
    assert preferred_ports(settings)["amqp_stream"] == 41000 + STREAM_PORT_OFFSET
    record_ports(tmp_path / "ports.json", {**preferred_ports(settings), "redis": 45000})
    assert settings.stack_ports["redis"] == 45000
    assert settings.redis == "redis://127.0.0.1:45000/0"
    assert json.loads((tmp_path / "ports.json").read_text())["amqp"] == 41000
    forget_ports(tmp_path / "ports.json")
    forget_ports(tmp_path / "ports.json")  # idempotent
    assert settings.stack_ports["redis"] == 41001
