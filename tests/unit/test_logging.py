"""Every line a hisho process writes to stderr is one JSON object, libraries' lines included.

The logging set-up replaces the root handler, so it runs in a child process of its own (the
test runner's capture handlers stay untouched).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

_SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, threading, warnings

    import faststream  # noqa: F401  (brings a stderr handler of its own at import)
    import structlog
    from fastapi import FastAPI

    from infra.logging import configure_logging
    from infra.settings import Settings
    from producers.ingress.serve import uvicorn_config

    configure_logging(Settings(log_format="json", log_level="info"))
    uvicorn_config(FastAPI(), host="127.0.0.1", port=1)  # what the ingress builds

    for name in ("aiormq", "aio_pika", "faststream", "uvicorn.error", "asyncpg", "alembic", ""):
        logging.getLogger(name).warning("plain line from %r\\nwith a second line", name)
    logging.getLogger("aiormq").info("library chatter below WARNING")
    try:
        raise ConnectionError("broker gone")
    except ConnectionError:
        logging.getLogger("aio_pika.robust_connection").exception("connection attempt failed")
    log = structlog.get_logger("hisho.test")
    log.info("structured", n=1)
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("with a traceback")
    warnings.warn("a deprecation", DeprecationWarning, stacklevel=1)
    loop = asyncio.new_event_loop()
    loop.call_exception_handler({"message": "loop trouble", "exception": ValueError("x")})
    loop.close()
    thread = threading.Thread(target=lambda: {}["missing"], name="worker")
    thread.start()
    thread.join()

    class Finalised:
        def __del__(self):
            raise OSError("in __del__")

    Finalised()
    raise RuntimeError("nobody caught me")
    """
)


def _run() -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HISHO_")}
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", _SCRIPT],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_stderr_line_is_one_json_object_tracebacks_included() -> None:
    result = _run()
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    events = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    assert len(events) == len(lines) > 0
    by_logger = {event.get("logger") for event in events}
    for name in ("aiormq", "aio_pika", "faststream", "uvicorn.error", "asyncpg", "alembic"):
        assert name in by_logger, name
    assert "root" in by_logger
    assert not [e for e in events if "chatter" in e["event"]]  # libraries log from WARNING
    text = {event["event"]: event for event in events}
    assert "with a second line" in text["plain line from 'aiormq'\nwith a second line"]["event"]
    assert "ConnectionError: broker gone" in text["connection attempt failed"]["exception"]
    assert text["structured"]["n"] == 1
    assert "ZeroDivisionError" in text["with a traceback"]["exception"]
    assert any("a deprecation" in event["event"] for event in events)
    assert "ValueError" in text["loop trouble"]["exception"]
    assert text["uncaught exception in a thread"]["thread"] == "worker"
    assert "KeyError" in text["uncaught exception in a thread"]["exception"]
    assert any("OSError: in __del__" in event.get("exception", "") for event in events)
    uncaught = text["uncaught exception"]
    assert uncaught["level"] == "critical"
    assert "RuntimeError: nobody caught me" in uncaught["exception"]
    assert all({"timestamp", "level", "event"} <= event.keys() for event in events)
