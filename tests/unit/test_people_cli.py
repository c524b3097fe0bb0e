"""`hisho people`: bad input is one line on stderr and exit 2, before any database is reached.

The database URL points at a closed port: a command that tried to connect would say so.
"""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from hisho.cli import app

PID = "user:https://issuer.example/sub"


@pytest.fixture(autouse=True)
def _no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HISHO_DATABASE_URL", f"postgresql://nobody@127.0.0.1:{port}/none")


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["people", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "alice", "--name", "Alice"), "hisho: invalid principal_id: "),
        (("add", PID, "--name", ""), "hisho: invalid display_name: "),
        (("add", PID, "--name", "A", "--email", "a@localhost"), "hisho: invalid email: "),
        (("add", PID, "--name", "A", "--email", "not-an-address"), "hisho: invalid email: "),
        (("add", PID, "--name", "A", "--webhook", "ftp://x.example"), "invalid chat_webhook_url"),
        (("add", PID, "--name", "A", "--channel", "sms"), "hisho: invalid preferences.channels.0"),
        (("add", PID, "--name", "A", "--channel", "email", "--channel", "email"), "once"),
        (("add", PID, "--name", "A", "--channel", "email", "--no-channels"), "not both"),
        (("add", PID, "--name", "A", "--min-priority", "soon"), "invalid preferences.min_priority"),
        (("show", "nobody"), "hisho: invalid principal_id: "),
        (("erase", "key:"), "hisho: invalid principal_id: "),
        (("update", "alice", "--name", "x"), "hisho: invalid principal_id: "),
        (("update", PID, "--name", ""), "hisho: invalid display_name: "),
        (("update", PID, "--email", "a@b.example", "--no-email"), "--email or --no-email"),
        (("update", PID, "--webhook", "https://x.example", "--no-webhook"), "not both"),
        (("update", PID, "--webhook", "mailto:a@b.example"), "invalid chat_webhook_url"),
        (("update", PID, "--channel", "fax"), "hisho: invalid channels.0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_without_touching_the_database(
    args: tuple[str, ...], message: str
) -> None:
    code, out, err = _run(*args)
    assert code == 2, (out, err)
    assert out == ""
    assert err.count("\n") == 1, err
    assert message in err
    assert "database" not in err


def test_an_unreachable_database_is_one_line_and_exit_1() -> None:
    code, out, err = _run("add", PID, "--name", "Ada")
    assert (code, out) == (1, "")
    assert err.startswith("hisho: cannot reach the database: ")
    assert err.count("\n") == 1, err
