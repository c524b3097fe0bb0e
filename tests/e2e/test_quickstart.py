"""The README's quickstart, run as written: its `sh` blocks are read from README.md and run
with bash against `hisho run relay|processor|ingress` processes on the test services.

Only the key placeholder and the ingress URL are substituted, so the test fails when the
README drifts from what works.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pytest

from tests.components_support import component_env, components, free_port
from tests.ingress_support import hisho_cli
from tests.processor_support import backlog_worked_off

if TYPE_CHECKING:
    from collections.abc import Iterator

    from infra.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KEY_PLACEHOLDER = "hisho_..."
README_URL = "http://127.0.0.1:8080"
DEADLINE = 60.0


def quickstart_blocks(readme: str) -> list[str]:
    """The `sh` code blocks of the README's Quickstart section, in order."""
    _, found, rest = readme.partition("\n## Quickstart")
    assert found, "README.md has no '## Quickstart' section"
    section = rest.split("\n## ", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)


def block_with(text: str) -> str:
    """The one quickstart block that contains `text`."""
    blocks = [b for b in quickstart_blocks((ROOT / "README.md").read_text()) if text in b]
    assert len(blocks) == 1, f"{len(blocks)} quickstart blocks contain {text!r}"
    return blocks[0]


class Lines:
    """The lines a stream yields, collected by a thread so a test can wait for one."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)

    def wait_for(self, text: str, timeout: float = DEADLINE) -> str:
        """The first line containing `text` (bounded wait)."""
        while True:
            if found := next((line for line in self.seen if text in line), None):
                return found
            try:
                self.seen.append(self._queue.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} in: {self.seen}") from None


@pytest.fixture(scope="module")
def system(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, str], str]]:
    """relay, processor and ingress as processes; the environment and the ingress URL."""
    port = free_port()
    env = component_env(settings, HISHO_INGRESS_PORT=str(port))
    hisho_cli(env, "migrate")
    with components(env, tmp_path_factory.mktemp("quickstart"), ("relay", "processor", "ingress")):
        asyncio.run(backlog_worked_off(settings))  # other tests' leftovers, before ours
        yield env, f"http://127.0.0.1:{port}"


def bash(script: str, env: dict[str, str]) -> str:
    """Run a README block with bash in the repository root; its stdout (exit 0 required)."""
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_readme_quickstart_creates_a_project_and_tail_shows_its_event(
    system: tuple[dict[str, str], str],
) -> None:
    env, url = system
    token = bash(block_with(".venv/bin/hisho keys create"), env).splitlines()[-1]
    assert token.startswith("hisho_"), token
    create = block_with("curl")
    assert create.count(KEY_PLACEHOLDER) == 1, "the key placeholder moved"
    assert create.count(README_URL) == 1, "the ingress URL moved"
    tail = subprocess.Popen(  # one simple command: bash execs it, so SIGTERM reaches hisho
        ["bash", "-c", block_with(".venv/bin/hisho events tail")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stdout is not None
        assert tail.stderr is not None
        printed, told = Lines(tail.stdout), Lines(tail.stderr)
        told.wait_for("watching hisho.events")
        answer, *_, final = bash(
            create.replace(KEY_PLACEHOLDER, token).replace(README_URL, url), env
        ).splitlines()
        assert json.loads(answer)["status_url"].startswith("/v1/commands/")
        status = json.loads(final)
        assert status["status"] == "processed", status
        [event_id] = status["result_event_ids"]
        line = printed.wait_for(event_id)
        assert re.search(r"\s\d+  ProjectCreated  project [0-9a-f-]{36} v1  id ", line), line
        tail.send_signal(signal.SIGTERM)
        assert tail.wait(timeout=DEADLINE) == 0, told.seen
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
