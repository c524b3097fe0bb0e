"""`hisho catalog` lists every type and writes one JSON Schema file per type."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import typer
from typer.testing import CliRunner

from events import catalog
from hisho.cli.catalog import register

if TYPE_CHECKING:
    from pathlib import Path


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Keep `catalog` a subcommand, as under the real `hisho` app."""

    register(app)
    return app


def test_catalog_prints_every_type_with_kind_version_routing_key_and_sender() -> None:
    result = CliRunner().invoke(_app(), ["catalog"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["TYPE", "KIND", "VERSION", "ROUTING", "KEY", "SENT", "BY"]
    expected = [
        [e.type, e.kind, str(e.version), e.routing_key, "callers" if e.public else "hisho"]
        for e in catalog.entries()
    ]
    assert rows[1:] == expected
    senders = {row[0]: row[-1] for row in rows[1:]}
    assert (senders["ExpirePlan"], senders["SubmitPlan"], senders["PlanApproved"]) == (
        "hisho",
        "callers",
        "hisho",
    )


def test_json_schema_writes_one_file_per_type(tmp_path: Path) -> None:
    target = tmp_path / "new" / "schemas"
    result = CliRunner().invoke(_app(), ["catalog", "--json-schema", str(target)])
    assert result.exit_code == 0, result.output
    files = sorted(path.name for path in target.iterdir())
    assert files == sorted(f"{e.type}.v{e.version}.json" for e in catalog.entries())
    for entry in catalog.entries():
        written = json.loads((target / f"{entry.type}.v{entry.version}.json").read_text())
        assert written == entry.model.model_json_schema()


def test_json_schema_into_an_existing_file_fails_with_one_line(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("occupied")
    result = CliRunner().invoke(_app(), ["catalog", "--json-schema", str(not_a_dir)])
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(not_a_dir) in result.stderr
    assert not_a_dir.read_text() == "occupied"


def test_real_entry_point_reports_bad_input_on_one_stderr_line(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("occupied")
    done = subprocess.run(
        [sys.executable, "-m", "hisho", "catalog", "--json-schema", str(not_a_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("hisho catalog: ")
