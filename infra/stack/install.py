"""Where the Debian packages put the server binaries, and installing the missing ones."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from infra.stack.process import StackError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

log = structlog.get_logger()

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
POSTGRES_ROOT = Path("/usr/lib/postgresql")
PACKAGES = {"rabbitmq": "rabbitmq-server", "postgres": "postgresql", "redis": "redis-server"}
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the programs the launcher runs (None where a package is missing)."""

    rabbitmq_server: Path | None
    rabbitmqctl: Path | None
    epmd: Path | None
    postgres_bin: Path | None
    redis_server: Path | None

    def missing(self, services: Collection[str]) -> list[str]:
        """Debian packages to install so every service in `services` can run."""
        found = {
            "rabbitmq": None not in (self.rabbitmq_server, self.rabbitmqctl, self.epmd),
            "postgres": self.postgres_bin is not None,
            "redis": self.redis_server is not None,
        }
        return [PACKAGES[name] for name in PACKAGES if name in services and not found[name]]


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name)) or (0,)


def postgres_bin_dir(root: Path = POSTGRES_ROOT) -> Path | None:
    """The newest `/usr/lib/postgresql/<version>/bin` that holds a `postgres` binary."""
    candidates = [d for d in root.glob("*/bin") if (d / "postgres").is_file()]
    return max(candidates, key=lambda d: _version_key(d.parent), default=None)


def _executable(path: Path) -> Path | None:
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _which(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


def find_binaries() -> Binaries:
    """Look the binaries up where Debian installs them."""
    return Binaries(
        rabbitmq_server=_executable(RABBITMQ_BIN / "rabbitmq-server"),
        rabbitmqctl=_executable(RABBITMQ_BIN / "rabbitmqctl"),
        epmd=_which("epmd") or _executable(Path("/usr/lib/erlang/bin/epmd")),
        postgres_bin=postgres_bin_dir(),
        redis_server=_which("redis-server") or _executable(Path("/usr/bin/redis-server")),
    )


def install_command(packages: Collection[str]) -> list[str]:
    """The apt-get command that installs `packages`."""
    return ["apt-get", "install", "-y", *packages]


def _apt(argv: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("stack.apt", command=" ".join(argv))
    result = subprocess.run(argv, env=env, check=False)  # noqa: S603
    if result.returncode != 0:
        raise StackError(f"`{' '.join(argv)}` failed with exit code {result.returncode}")


def _install_as_root(packages: list[str]) -> None:
    """apt-get update once, then install, with policy-rc.d keeping the system services off."""
    guard = not POLICY_RC_D.exists()
    if guard:  # exit 101 = "action forbidden": the packages' own services are not started
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        _apt(["apt-get", "update"])
        _apt(install_command(packages))
    finally:
        if guard:
            POLICY_RC_D.unlink(missing_ok=True)


def ensure_installed(
    services: Collection[str],
    *,
    find: Callable[[], Binaries] = find_binaries,
    is_root: bool | None = None,
    install: Callable[[list[str]], None] = _install_as_root,
) -> Binaries:
    """Return the binaries, installing missing packages when root; otherwise name the command."""
    binaries = find()
    missing = binaries.missing(services)
    if not missing:
        return binaries
    root = os.geteuid() == 0 if is_root is None else is_root
    if not root:
        command = " ".join(["sudo", *install_command(missing)])
        raise StackError(f"missing packages {', '.join(missing)}; install them with: {command}")
    install(missing)
    binaries = find()
    if still := binaries.missing(services):
        raise StackError(f"packages {', '.join(still)} were installed but binaries are missing")
    return binaries
