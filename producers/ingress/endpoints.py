"""Endpoints built from a method and declared parameters (FastAPI reads the signature)."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

_P = inspect.Parameter


def param(name: str, annotation: Any, default: Any = _P.empty) -> inspect.Parameter:  # noqa: ANN401
    """A keyword-only parameter of an endpoint (its annotation says how FastAPI fills it)."""
    return _P(name, _P.KEYWORD_ONLY, annotation=annotation, default=default)


def endpoint(method: Callable[..., Awaitable[Any]], *params: inspect.Parameter) -> Any:  # noqa: ANN401
    """`method` as a FastAPI endpoint with these keyword parameters."""

    async def call(**values: Any) -> Any:  # noqa: ANN401
        return await method(**values)

    call.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return call
