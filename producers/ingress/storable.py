r"""Text PostgreSQL cannot store is refused at the ingress (422), never accepted and parked.

PostgreSQL's `text` and `jsonb` refuse the NUL character (U+0000), and UTF-8 cannot encode a
lone surrogate (U+D800-U+DFFF, e.g. from a JSON `"\ud800"`). Pydantic refuses a surrogate
in a `str` field but lets NUL through, so a command with NUL in any string would be
accepted and then fail in the processor. `unstorable` walks a validated command (every
string value and every mapping key, at any depth) and names each such field in FastAPI's
error format: the route raises them as its `422`, and the fast path declines the request so
that the route does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

Loc = tuple[str | int, ...]

NUL = "contains the NUL character (\\u0000), which cannot be stored"
SURROGATE = "contains a lone surrogate (\\ud800-\\udfff), which is not Unicode text"


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    if "\x00" in text:
        return NUL
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE
    return None


def unstorable(value: object, loc: Loc = ("body",)) -> list[dict[str, Any]]:
    """FastAPI-style errors (`type`, `loc`, `msg`) for every string in `value` not storable."""
    errors: list[dict[str, Any]] = []
    _walk(value, loc, errors)
    return errors


def _walk(value: object, loc: Loc, errors: list[dict[str, Any]]) -> None:
    if isinstance(value, str):
        _check(value, loc, errors)
    elif isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            _walk(getattr(value, name), (*loc, field.alias or name), errors)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                _check(key, (*loc, key), errors, what="key")
            _walk(item, (*loc, key), errors)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for index, item in enumerate(value):
            _walk(item, (*loc, index), errors)


def _check(text: str, loc: Loc, errors: list[dict[str, Any]], *, what: str = "text") -> None:
    problem = text_problem(text)
    if problem is not None:
        shown = tuple(_printable(part) for part in loc)
        errors.append({"type": "string_unstorable", "loc": shown, "msg": f"the {what} {problem}"})


def _printable(part: str | int) -> str | int:
    """A location part that can be rendered as JSON (a surrogate shown as its escape)."""
    if isinstance(part, str) and not part.isascii():
        return part.encode("utf-8", "backslashreplace").decode()
    return part
