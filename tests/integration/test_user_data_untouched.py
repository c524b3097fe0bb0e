"""The suite leaves the user's database and vhost as it found them (it runs last)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.settings import load_settings
from tests.isolation import TEST_REDIS_DB, Servers

if TYPE_CHECKING:
    from tests.isolation import UserDataFingerprint, UserDataProbe


def test_the_session_uses_its_own_database_vhost_and_redis(
    user_data: tuple[UserDataProbe, UserDataFingerprint],
) -> None:
    probe, _ = user_data
    mine = Servers.of(load_settings())
    assert mine.database_dsn.rsplit("/", 1)[1].startswith("hisho_test_")
    assert mine.vhost.startswith("hisho_test_")
    assert mine.database_dsn != probe.servers.database_dsn
    assert mine.vhost != probe.servers.vhost
    assert mine.redis.endswith(f"/{TEST_REDIS_DB}")
    assert not probe.servers.redis.endswith(f"/{TEST_REDIS_DB}")


def test_the_suite_wrote_nothing_into_the_user_database_or_vhost(
    user_data: tuple[UserDataProbe, UserDataFingerprint],
) -> None:
    probe, before = user_data
    after = probe.fingerprint()
    changed = {
        table: (before.tables.get(table), counts)
        for table, counts in after.tables.items()
        if before.tables.get(table) != counts
    }
    assert not changed, f"tests wrote into the user's database: {changed}"
    assert after.published == before.published, "tests published into the user's vhost"
