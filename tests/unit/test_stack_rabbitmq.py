"""The private RabbitMQ node's configuration: loopback only, own ports, own node and cookie."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from infra.stack.layout import StackLayout
from infra.stack.rabbitmq import RabbitMQ

if TYPE_CHECKING:
    import pytest

PORTS = {
    "amqp": 41001,
    "amqp_dist": 41002,
    "amqp_management": 41003,
    "amqp_stream": 41004,
    "epmd": 41005,
}


def test_each_stack_dir_gets_its_own_node_name(tmp_path: Path) -> None:
    one = RabbitMQ(StackLayout(tmp_path / "one"))
    assert one.node == RabbitMQ(StackLayout(tmp_path / "one")).node
    assert one.node != RabbitMQ(StackLayout(tmp_path / "two")).node
    assert one.node.startswith("hisho-")
    assert one.node.endswith("@localhost")


def test_the_environment_binds_everything_to_loopback_on_our_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RABBITMQ_NODENAME", "rabbit@elsewhere")
    monkeypatch.setenv("ERL_EPMD_PORT", "4369")
    env = RabbitMQ(StackLayout(tmp_path)).env(PORTS)
    assert env["RABBITMQ_NODENAME"].startswith("hisho-")
    assert env["RABBITMQ_NODE_IP_ADDRESS"] == "127.0.0.1"
    assert env["RABBITMQ_NODE_PORT"] == "41001"
    assert env["RABBITMQ_DIST_PORT"] == "41002"
    assert (env["ERL_EPMD_ADDRESS"], env["ERL_EPMD_PORT"]) == ("127.0.0.1", "41005")
    assert "inet_dist_use_interface {127,0,0,1}" in env["ERL_FLAGS"]
    assert Path(env["HOME"]).is_relative_to(tmp_path)  # so the Erlang cookie is ours
    for key in ("MNESIA_BASE", "LOG_BASE", "CONFIG_FILE", "CONF_ENV_FILE", "ENABLED_PLUGINS_FILE"):
        assert Path(env[f"RABBITMQ_{key}"]).is_relative_to(tmp_path), key


def test_config_enables_our_plugins_and_listens_on_loopback(tmp_path: Path) -> None:
    broker = RabbitMQ(StackLayout(tmp_path))
    broker.write_config(PORTS)
    plugins = (broker.home / "enabled_plugins").read_text().strip()
    assert plugins == ("[rabbitmq_consistent_hash_exchange,rabbitmq_stream,rabbitmq_management].")
    conf = dict(
        line.split(" = ", 1)
        for line in (broker.home / "rabbitmq.conf").read_text().splitlines()
        if " = " in line and not line.startswith("#")
    )
    assert conf["management.tcp.ip"] == "127.0.0.1"
    assert conf["management.tcp.port"] == "41003"
    assert conf["stream.listeners.tcp.1"] == "127.0.0.1:41004"
    assert (conf["default_user"], conf["default_pass"]) == ("hisho", "hisho")
    assert conf["loopback_users"] == "none"
