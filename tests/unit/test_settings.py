"""Configuration is an entry point too: a bad value stops start-up with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from infra.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HISHO_AMQP_URL", "not a url"),
        ("HISHO_DATABASE_URL", "http://example.invalid/db"),
        ("HISHO_STACK_POSTGRES_PORT", "70000"),
        ("HISHO_RELAY_BATCH_SIZE", "zero"),
        ("HISHO_LOG_FORMAT", "xml"),
    ],
)
def test_bad_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"^{variable}: "):
        load_settings()


def test_cli_answers_bad_setting_with_one_line_and_exit_code_2() -> None:
    env = {**os.environ, "HISHO_STACK_REDIS_PORT": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "hisho", "stack", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hisho: configuration error: HISHO_STACK_REDIS_PORT:")


def test_urls_given_in_the_environment_win_over_the_local_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HISHO_DATABASE_URL", "postgresql://u@127.0.0.1:5999/x")
    settings = load_settings()
    assert settings.database == "postgresql+asyncpg://u@127.0.0.1:5999/x"
    assert settings.database_dsn == "postgresql://u@127.0.0.1:5999/x"
