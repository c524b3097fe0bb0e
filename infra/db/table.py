"""Table descriptions: a table's name, columns (with PostgreSQL types) and conflict rule, once.

A `Table` is what the writers and readers of a table derive their SQL from: the batched
insert a unit of work's commit statement runs (`insert_sql`: one `INSERT ... SELECT ... FROM
unnest(...)` over one array per written column, in row order, with the conflict rule), the
arrays of a batch of rows (`arrays`), the column lists of readers (`names`, `written`), the
SQLAlchemy table the migrations are checked against (`infra.db.tables`), and the in-memory
fake's behaviour on a conflict (`Conflict.allows`). Only fixed names from these descriptions
and numbered placeholders are ever formatted into SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

# A replace rule in Python, for in-memory fakes: (the stored row, the new row) -> replace?
Allows = Callable[[Mapping[str, Any], Mapping[str, Any]], bool]


@dataclass(frozen=True)
class Column:
    """One column: its name and PostgreSQL type (`uuid`, `text`, `jsonb`, `uuid[]`, ...).

    `written`: a unit of work's insert gives it (else the database's default fills it, or
    another writer, such as the relay, sets it later).
    """

    name: str
    type: str
    nullable: bool = True
    written: bool = True
    default: str | None = None  # the server default, as SQL (`now()`, `'{}'`)
    primary_key: bool = False
    unique: bool = False
    identity: bool = False  # numbered by the database, in insert order

    @property
    def array(self) -> bool:
        """Whether the column holds an array (its batch parameter is text of array literals)."""
        return self.type.endswith("[]")


@dataclass(frozen=True)
class Conflict:
    """What an insert does when a row with the same `key` exists.

    Nothing (the row is left out), or, with `replace`, the written columns are replaced and
    `touch` set to `now()`, where `where` (SQL over `excluded` and the table) holds; `allows`
    is the same condition in Python (the fakes apply it).
    """

    key: tuple[str, ...]
    replace: bool = False
    touch: tuple[str, ...] = ()
    where: str = ""
    allows: Allows | None = field(default=None, compare=False)


@dataclass(frozen=True, eq=False)  # one object per table: hashed (a dict key) by identity
class Table:
    """A table as its writers and readers see it."""

    name: str
    columns: tuple[Column, ...]
    conflict: Conflict | None = None

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Every column's name, in order."""
        return tuple(column.name for column in self.columns)

    @cached_property
    def written(self) -> tuple[str, ...]:
        """The columns an insert gives, in order: a row (`Rows.add`) is a tuple of these."""
        return tuple(column.name for column in self.columns if column.written)

    @cached_property
    def array_positions(self) -> tuple[int, ...]:
        """Where the array columns are in a written row."""
        return tuple(n for n, name in enumerate(self.written) if self.column(name).array)

    @cached_property
    def key_positions(self) -> tuple[int, ...]:
        """Where the conflict key's columns are in a written row (none without a rule)."""
        key = self.conflict.key if self.conflict else ()
        return tuple(self.written.index(name) for name in key)

    def column(self, name: str) -> Column:
        """The column called `name`."""
        return next(column for column in self.columns if column.name == name)

    def on_conflict(self) -> str:
        """The insert's `ON CONFLICT` clause ('' without a rule)."""
        rule = self.conflict
        if rule is None:
            return ""
        target = f" ON CONFLICT ({', '.join(rule.key)})"
        if not rule.replace:
            return target + " DO NOTHING"
        sets = [f"{name} = excluded.{name}" for name in self.written if name not in rule.key]
        sets += [f"{name} = now()" for name in rule.touch]
        where = f" WHERE {rule.where}" if rule.where else ""
        return f"{target} DO UPDATE SET {', '.join(sets)}{where}"

    def insert_sql(self, first: int) -> str:
        """Insert the rows of `arrays` (parameters numbered from `first`), in row order."""
        written = [self.column(name) for name in self.written]
        arrays = ", ".join(
            f"${first + n}::{'text' if column.array else column.type.removesuffix('[]')}[]"
            for n, column in enumerate(written)
        )
        values = ", ".join(
            f"r.{column.name}::{column.type}" if column.array else f"r.{column.name}"
            for column in written
        )
        names = ", ".join(self.written)
        return (
            f"INSERT INTO {self.name} ({names}) SELECT {values}"  # noqa: S608  (fixed names)
            f" FROM unnest({arrays}) WITH ORDINALITY AS r({names}, hisho_n)"
            f" ORDER BY r.hisho_n{self.on_conflict()}"
        )

    def arrays(self, rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
        """The parameters of `insert_sql` for `rows`: one array per written column.

        An array column's values become array literals (one text per row).
        """
        if not rows:
            return [[] for _ in self.written]
        columns = [list(values) for values in zip(*rows, strict=True)]
        for n in self.array_positions:
            columns[n] = [None if v is None else _literal(v) for v in columns[n]]
        return columns

    def select_list(self, names: Sequence[str], *, uuids_as_text: bool = False) -> str:
        """A SELECT list of `names` (checked against the table); UUIDs as text if asked."""
        return ", ".join(
            f"{name}::text AS {name}"
            if uuids_as_text and self.column(name).type == "uuid"
            else self.column(name).name
            for name in names
        )

    def record(self, row: tuple[Any, ...]) -> dict[str, Any]:
        """A written row as a mapping of column names to values."""
        return dict(zip(self.written, row, strict=True))


def _literal(values: Sequence[object]) -> str:
    return "{" + ",".join(map(str, values)) + "}"
