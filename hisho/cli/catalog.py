"""`hisho catalog`: list message types, or write their JSON Schemas."""

from __future__ import annotations

import json
import sys
from pathlib import Path  # noqa: TC003  (typer reads annotations at runtime)

import typer

from events import CatalogEntry, catalog

_HEADERS = ("TYPE", "KIND", "VERSION", "ROUTING KEY", "SENT BY")


def _table(entries: list[CatalogEntry]) -> str:
    rows = [_HEADERS] + [
        (e.type, e.kind, str(e.version), e.routing_key, _sender(e)) for e in entries
    ]
    widths = [max(len(row[col]) for row in rows) for col in range(len(_HEADERS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _sender(entry: CatalogEntry) -> str:
    """Who sends a message: hisho alone (system-only commands, every event), or callers."""
    return "callers" if entry.public else "hisho"


def write_json_schemas(directory: Path, entries: list[CatalogEntry]) -> list[Path]:
    """Write `<Type>.v<version>.json` per entry into `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in entries:
        path = directory / f"{entry.type}.v{entry.version}.json"
        schema = entry.model.model_json_schema()
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


def register(app: typer.Typer) -> None:
    """Add the catalog command to the root app."""

    @app.command("catalog")
    def catalog_command(
        json_schema: Path | None = typer.Option(
            None,
            "--json-schema",
            metavar="DIR",
            help="Write one JSON Schema per type into DIR as <Type>.v<version>.json.",
        ),
    ) -> None:
        """List every command and event type: version, routing key, who sends it."""
        entries = catalog.entries()
        if json_schema is None:
            typer.echo(_table(entries))
            return
        try:
            written = write_json_schemas(json_schema, entries)
        except OSError as exc:
            print(f"hisho catalog: cannot write schemas to {json_schema}: {exc}", file=sys.stderr)
            raise typer.Exit(code=2) from None
        typer.echo(f"wrote {len(written)} schemas to {json_schema}")
