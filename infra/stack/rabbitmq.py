"""RabbitMQ (Debian's 3.10 package) as a private node, with an epmd of its own on loopback.

Debian's `/usr/sbin/rabbitmqctl` wrapper, run as root, switches user and spawns an epmd on
all interfaces; we call `/usr/lib/rabbitmq/bin/*` directly with the node's environment
instead (HOME under the stack dir, so the Erlang cookie is ours).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from typing import TYPE_CHECKING

from infra.stack.probes import amqp_login, epmd_names
from infra.stack.process import StackError, ensure_running

if TYPE_CHECKING:
    from collections.abc import Mapping

    from infra.stack.install import Binaries
    from infra.stack.layout import StackLayout

USER = "hisho"
PASSWORD = "hisho"  # noqa: S105  (a development broker on loopback)
PLUGINS = ("rabbitmq_consistent_hash_exchange", "rabbitmq_stream", "rabbitmq_management")
START_TIMEOUT = 120.0
EPMD_TIMEOUT = 10.0
CTL_TIMEOUT = 60.0

# The server script runs the Erlang VM as a child of a `/bin/sh` that waits for it, unless
# input is "allowed": then it execs the VM, so the pid we start and record *is* the server's
# (SIGTERM stops it gracefully; a crash leaves no shell behind). No shell reads input anyway:
# `-noinput`, and `+B i` ignores SIGINT as the script's own mode does.
EXEC_SERVER = {"RABBITMQ_ALLOW_INPUT": "true", "RABBITMQ_SERVER_START_ARGS": "-noinput +B i"}

CONFIG = """\
# Written by `hisho stack` at every start: edit infra/stack/rabbitmq.py instead.
loopback_users = none
default_vhost = /
default_user = {user}
default_pass = {password}
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
management.tcp.ip = 127.0.0.1
management.tcp.port = {management}
stream.listeners.tcp.1 = 127.0.0.1:{stream}
stream.advertised_host = 127.0.0.1
stream.advertised_port = {stream}
log.console = true
log.console.level = info
log.console.use_colors = off
log.file = false
"""


class RabbitMQ:
    """The broker (`rabbitmq` process, the Erlang VM) and its epmd (`epmd` process)."""

    name = "rabbitmq"
    port_key = "amqp"
    port_owners: Mapping[str, str] = {
        "amqp": "rabbitmq",
        "amqp_dist": "rabbitmq",
        "amqp_management": "rabbitmq",
        "amqp_stream": "rabbitmq",
        "epmd": "epmd",
    }
    processes: tuple[str, ...] = ("rabbitmq", "epmd")  # stop order: the broker before its epmd
    stop_signals: Mapping[str, int] = {}

    def __init__(self, layout: StackLayout) -> None:
        self.layout = layout
        self.home = layout.data(self.name)

    @property
    def node(self) -> str:
        """The node name, unique per stack dir so two stacks never share mnesia or epmd."""
        digest = hashlib.sha256(str(self.layout.root.resolve()).encode()).hexdigest()[:10]
        return f"hisho-{digest}@localhost"

    def env(self, ports: Mapping[str, int]) -> dict[str, str]:
        """The environment of the server and of `rabbitmqctl` for this node."""
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_", "HISHO_"))
        }
        return base | {
            "HOME": str(self.home / "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_MNESIA_BASE": str(self.home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.home / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.home / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.home / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.home / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.home / "enabled_plugins"),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(ports["amqp"]),
            "RABBITMQ_DIST_PORT": str(ports["amqp_dist"]),
            "RABBITMQ_CTL_DIST_PORT_MIN": "0",  # the CLI's default range starts at 35672
            "RABBITMQ_CTL_DIST_PORT_MAX": "0",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(ports["epmd"]),
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_CRASH_DUMP": str(self.home / "log" / "erl_crash.dump"),
        }

    def write_config(self, ports: Mapping[str, int]) -> None:
        """Write rabbitmq.conf, the plugins file and an empty env file (not /etc's)."""
        for sub in ("home", "mnesia", "log"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        (self.home / "home").chmod(0o700)
        (self.home / "rabbitmq.conf").write_text(
            CONFIG.format(
                user=USER,
                password=PASSWORD,
                management=ports["amqp_management"],
                stream=ports["amqp_stream"],
            )
        )
        (self.home / "enabled_plugins").write_text(f"[{','.join(PLUGINS)}].\n")
        (self.home / "rabbitmq-env.conf").write_text("# hisho: the environment comes from us\n")

    def start(self, ports: Mapping[str, int], binaries: Binaries) -> bool:
        """Start epmd and the broker unless they run; wait for an AMQP login to succeed."""
        if binaries.epmd is None or binaries.rabbitmq_server is None:
            raise StackError("RabbitMQ binaries are missing")
        self.write_config(ports)
        env = self.env(ports)
        epmd_port = ports["epmd"]
        started = ensure_running(
            [str(binaries.epmd), "-address", "127.0.0.1", "-port", str(epmd_port)],
            name="epmd",
            pid_file=self.layout.pid_file("epmd"),
            log=self.layout.log("epmd"),
            probe=lambda: epmd_names(epmd_port),
            timeout=EPMD_TIMEOUT,
            env=env,
        )
        return (
            ensure_running(
                [str(binaries.rabbitmq_server)],
                name="rabbitmq",
                pid_file=self.layout.pid_file("rabbitmq"),
                log=self.layout.log("rabbitmq"),
                probe=lambda: self.healthy(ports),
                timeout=START_TIMEOUT,
                env=env | EXEC_SERVER,
            )
            or started
        )

    def healthy(self, ports: Mapping[str, int]) -> bool:
        """True when user hisho can open vhost `/` over AMQP."""
        return amqp_login(ports["amqp"], user=USER, password=PASSWORD)

    def ctl(
        self, ports: Mapping[str, int], binaries: Binaries, *args: str
    ) -> subprocess.CompletedProcess[str]:
        """Run `/usr/lib/rabbitmq/bin/rabbitmqctl ARGS` against this node (never the wrapper)."""
        if binaries.rabbitmqctl is None:
            raise StackError("rabbitmqctl is missing")
        return subprocess.run(  # noqa: S603
            [str(binaries.rabbitmqctl), "-n", self.node, *args],
            env=self.env(ports),
            capture_output=True,
            text=True,
            timeout=CTL_TIMEOUT,
            check=False,
        )
