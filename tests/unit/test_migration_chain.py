"""The migration scripts, read without a database: one linear, human-readable chain."""

from __future__ import annotations

import itertools

from alembic.script import ScriptDirectory

from infra.db.migrate import alembic_config


def test_migrations_form_one_chain_starting_at_0001_foundation() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert len(scripts.get_heads()) == 1
    chain = list(reversed(list(scripts.walk_revisions())))
    assert chain[0].revision == "0001_foundation"
    assert chain[0].down_revision is None
    for before, after in itertools.pairwise(chain):
        assert after.down_revision == before.revision
    for script in chain:
        number, _, name = script.revision.partition("_")
        assert number.isdigit()
        assert len(number) == 4
        assert name
