"""Where the private PostgreSQL keeps its cluster: reachable by the `postgres` user."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from infra.stack.layout import StackLayout
from infra.stack.postgres import FALLBACK_ROOT, Postgres, _reachable

OTHER_UID = 54321  # nobody we know: only the "other" permission bits apply to it
OTHER_GID = 54321


def test_a_directory_below_a_0700_parent_is_unreachable_for_another_user() -> None:
    # pytest's tmp_path sits below a 0700 directory; mkdtemp's parent (/tmp) is open to all.
    base = Path(tempfile.mkdtemp(prefix="hisho-reach-"))
    try:
        base.chmod(0o755)
        (base / "open" / "stack").mkdir(parents=True, mode=0o755)
        (base / "closed" / "stack").mkdir(parents=True, mode=0o755)
        (base / "open").chmod(0o755)
        (base / "open" / "stack").chmod(0o755)
        (base / "closed").chmod(0o700)
        assert _reachable(base / "open" / "stack", OTHER_UID, OTHER_GID)
        assert not _reachable(base / "closed" / "stack", OTHER_UID, OTHER_GID)
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to `postgres`")
def test_as_root_an_unreachable_stack_dir_puts_the_cluster_under_var_tmp(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    hidden.chmod(0o700)
    cluster = Postgres(StackLayout(hidden / "stack")).data
    assert cluster.is_relative_to(FALLBACK_ROOT)
    assert cluster != Postgres(StackLayout(hidden / "other")).data
    assert not cluster.exists()  # deciding where creates nothing outside the stack dir
