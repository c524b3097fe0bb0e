"""Finding the Debian binaries and installing the missing packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.stack.install import Binaries, ensure_installed, postgres_bin_dir
from infra.stack.process import StackError

ALL = Binaries(
    rabbitmq_server=Path("/x/rabbitmq-server"),
    rabbitmqctl=Path("/x/rabbitmqctl"),
    epmd=Path("/x/epmd"),
    postgres_bin=Path("/x/pg/bin"),
    redis_server=Path("/x/redis-server"),
)
NO_REDIS = Binaries(
    rabbitmq_server=ALL.rabbitmq_server,
    rabbitmqctl=ALL.rabbitmqctl,
    epmd=ALL.epmd,
    postgres_bin=ALL.postgres_bin,
    redis_server=None,
)


def test_only_packages_of_requested_services_count_as_missing() -> None:
    assert NO_REDIS.missing(["rabbitmq", "postgres"]) == []
    assert NO_REDIS.missing(["redis", "postgres"]) == ["redis-server"]
    assert Binaries(None, None, None, None, None).missing(["rabbitmq", "postgres", "redis"]) == [
        "rabbitmq-server",
        "postgresql",
        "redis-server",
    ]


def test_without_root_the_exact_install_command_is_named() -> None:
    def install(_: list[str]) -> None:
        raise AssertionError("must not install without root")

    with pytest.raises(StackError, match=r"sudo apt-get install -y redis-server"):
        ensure_installed(["redis"], find=lambda: NO_REDIS, is_root=False, install=install)


def test_as_root_missing_packages_are_installed_then_found_again() -> None:
    found = [NO_REDIS, ALL]
    installed: list[list[str]] = []
    binaries = ensure_installed(
        ["redis"], find=lambda: found.pop(0), is_root=True, install=installed.append
    )
    assert installed == [["redis-server"]]
    assert binaries == ALL


def test_nothing_is_installed_when_everything_is_there() -> None:
    def install(_: list[str]) -> None:
        raise AssertionError("nothing to install")

    assert ensure_installed(["redis"], find=lambda: ALL, is_root=True, install=install) == ALL


def test_the_newest_postgresql_version_directory_wins(tmp_path: Path) -> None:
    for version in ("9.6", "15", "13", "16"):
        (tmp_path / version / "bin").mkdir(parents=True)
        if version != "16":  # a leftover directory without binaries does not count
            (tmp_path / version / "bin" / "postgres").touch()
    assert postgres_bin_dir(tmp_path) == tmp_path / "15" / "bin"
    assert postgres_bin_dir(tmp_path / "absent") is None
