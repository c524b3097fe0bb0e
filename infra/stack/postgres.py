"""PostgreSQL (the newest `/usr/lib/postgresql/<version>`) in a data dir of the stack.

`initdb` and `postgres` refuse to run as root, so as root they run as the `postgres` user
(`setpriv`), which owns the data directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import structlog

from infra.stack.probes import postgres_accepts
from infra.stack.process import StackError, ensure_running, tail

if TYPE_CHECKING:
    from collections.abc import Mapping

    from infra.stack.install import Binaries
    from infra.stack.layout import StackLayout

logger = structlog.get_logger()

FALLBACK_ROOT = Path("/var/tmp")  # noqa: S108  (root-owned subdir, checked before use)
ROLE = "hisho"
DATABASE = "hisho"
OS_USER = "postgres"
START_TIMEOUT = 60.0
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "fsync": "on",
    "track_commit_timestamp": "on",  # when each transaction committed (bench, audit)
    "log_line_prefix": "%m [%p] %q%u@%d ",
}


class Postgres:
    """One postmaster (`postgres` process) serving role and database `hisho`."""

    name = "postgres"
    port_key = "postgres"
    port_owners: Mapping[str, str] = {"postgres": "postgres"}
    processes: tuple[str, ...] = ("postgres",)
    stop_signals: Mapping[str, int] = {"postgres": signal.SIGINT}  # "fast" shutdown

    def __init__(self, layout: StackLayout) -> None:
        self.layout = layout

    @property
    def data(self) -> Path:
        """The cluster: under the stack dir, or /var/tmp if `postgres` cannot reach that.

        (As root, a checkout below a 0700 home is out of the postgres user's reach.)
        """
        home = self.layout.data(self.name)
        if os.geteuid() != 0:
            return home / "data"
        home.mkdir(parents=True, exist_ok=True)
        owner = _postgres_user()
        if _reachable(home, owner.pw_uid, owner.pw_gid):
            return home / "data"
        digest = hashlib.sha256(str(self.layout.root.resolve()).encode()).hexdigest()[:10]
        return FALLBACK_ROOT / f"hisho-postgres-{digest}" / "data"

    def _run_as(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise StackError("setpriv (util-linux) is needed to run PostgreSQL as root")
        return [setpriv, f"--reuid={OS_USER}", f"--regid={OS_USER}", "--init-groups"]

    def start(self, ports: Mapping[str, int], binaries: Binaries) -> bool:
        """Initialise the cluster once, start the postmaster unless it runs, create `hisho`."""
        if binaries.postgres_bin is None:
            raise StackError("PostgreSQL binaries are missing")
        port = ports["postgres"]
        if self.layout.pid_file("postgres").live() is None:
            self._prepare(binaries.postgres_bin)
        argv = [*self._run_as(), str(binaries.postgres_bin / "postgres"), "-D", str(self.data)]
        argv += ["-p", str(port)]
        for key, value in SETTINGS.items():
            argv += ["-c", f"{key}={value}"]
        started = ensure_running(
            argv,
            name="postgres",
            pid_file=self.layout.pid_file("postgres"),
            log=self.layout.log("postgres"),
            probe=lambda: postgres_accepts(port, user=ROLE, database="postgres"),
            timeout=START_TIMEOUT,
        )
        self._create_database(port, binaries.postgres_bin)
        return started

    def healthy(self, ports: Mapping[str, int]) -> bool:
        """True when role hisho can connect to database hisho."""
        return postgres_accepts(ports["postgres"], user=ROLE, database=DATABASE)

    def _prepare(self, bin_dir: Path) -> None:
        if not (self.data / "PG_VERSION").is_file():
            self._initdb(bin_dir)
        self._clear_stale_lock()

    def _initdb(self, bin_dir: Path) -> None:
        data = self.data
        if not data.is_relative_to(self.layout.root):
            _make_root_dir(data.parent)
            logger.warning("stack.postgres_data_elsewhere", data=str(data), why="unreachable")
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = _postgres_user()
            os.chown(data, owner.pw_uid, owner.pw_gid)
        data.chmod(0o700)
        log = self.layout.log("initdb")
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [*self._run_as(), str(bin_dir / "initdb"), "-D", str(self.data)]
        argv += ["-U", ROLE, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"]
        with log.open("ab") as out:
            result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)  # noqa: S603
        if result.returncode != 0:
            raise StackError(f"initdb failed; see {log}\n{tail(log, 15)}")

    def _clear_stale_lock(self) -> None:
        """Remove postmaster.pid left by a crash, unless a live postmaster still owns it."""
        lock = self.data / "postmaster.pid"
        try:
            pid = int(lock.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        try:
            proc = psutil.Process(pid)
            alive = proc.status() != psutil.STATUS_ZOMBIE and "postgres" in proc.name()
        except psutil.Error:
            alive = False
        if alive:
            raise StackError(f"a PostgreSQL hisho did not record (pid {pid}) uses {self.data}")
        lock.unlink(missing_ok=True)

    def _create_database(self, port: int, bin_dir: Path) -> None:
        query = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"  # noqa: S608  (constant)
        exists = self._psql(port, bin_dir, query)
        if exists.strip() != "1":
            self._psql(port, bin_dir, f'CREATE DATABASE "{DATABASE}" OWNER "{ROLE}"')

    def _psql(self, port: int, bin_dir: Path, sql: str) -> str:
        argv = [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", ROLE]
        argv += ["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-tAc", sql]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)  # noqa: S603
        if result.returncode != 0:
            raise StackError(f"psql failed ({sql}): {result.stderr.strip()}")
        return result.stdout


def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        raise StackError(
            f"user {OS_USER} is missing (it comes with the postgresql package)"
        ) from None


def _reachable(path: Path, uid: int, gid: int) -> bool:
    """True when user `uid` (group `gid`) may enter `path` and every directory above it."""
    for directory in [path.resolve(), *path.resolve().parents]:
        info = directory.stat()
        if info.st_uid == uid:
            continue
        bit = stat.S_IXGRP if info.st_gid == gid else stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def _make_root_dir(path: Path) -> None:
    """Create a 0755 root-owned directory in a world-writable place, refusing impostors."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o755)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        raise StackError(f"{path} exists but is not a directory owned by root")
    path.chmod(0o755)
