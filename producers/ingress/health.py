"""`/healthz` (the process is up) and `/readyz` (broker and database reachable)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import text

from infra.redis_store import RedisUnavailableError
from producers.ingress.problems import ProblemError, problem_responses, retry_after

if TYPE_CHECKING:
    from fastapi import APIRouter
    from sqlalchemy.ext.asyncio import AsyncEngine

    from producers.ingress.ports import CommandPublisher, IngressStore

_CHECK_TIMEOUT = 1.0


class Health(BaseModel):
    """The process's health; `checks` names each dependency's state."""

    status: str
    checks: dict[str, str] = {}


async def _database(engine: AsyncEngine) -> str:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001  (any failure means "not reachable")
        return f"unreachable: {type(exc).__name__}"
    return "ok"


async def _redis(store: IngressStore) -> str:
    try:
        await store.ping()
    except RedisUnavailableError:
        return "degraded: unreachable (idempotency and markers in postgresql, rate limit off)"
    return "ok"


def add_health_routes(
    router: APIRouter, *, publisher: CommandPublisher, engine: AsyncEngine, store: IngressStore
) -> None:
    """Add liveness and readiness; Redis is reported but not required (hisho degrades)."""

    @router.get("/healthz", operation_id="healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Health:
        """The process is up and serving."""
        return Health(status="ok")

    @router.get(
        "/readyz",
        operation_id="readyz",
        tags=["operations"],
        response_model=Health,
        responses=problem_responses(503),
    )
    async def readyz() -> Health:
        """Ready when the broker and the database are reachable."""
        database, redis = await asyncio.gather(_database(engine), _redis(store))
        checks = {
            "broker": "ok" if publisher.ready else "unreachable",
            "database": database,
            "redis": redis,
        }
        if checks["broker"] != "ok" or checks["database"] != "ok":
            raise ProblemError(
                503,
                "not-ready",
                "Not ready",
                "the broker or the database is not reachable",
                checks=checks,
                headers=retry_after(1),
            )
        return Health(status="ready", checks=checks)
