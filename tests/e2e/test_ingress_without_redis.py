"""`hisho run ingress` whose Redis is a closed port: commands are still accepted, a reused key
with another body is `409` (nothing second published), a fresh status URL says `accepted`."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import uuid4

import httpx

from tests.ingress_support import cli_key, closed_port, hisho_cli, ingress_process, service_env, tap

if TYPE_CHECKING:
    from pathlib import Path

    from aio_pika.abc import AbstractRobustConnection

    from infra.settings import Settings


async def test_an_ingress_without_redis_keeps_idempotency_and_status_in_postgresql(
    settings: Settings, amqp: AbstractRobustConnection, tmp_path: Path
) -> None:
    env = service_env(settings, HISHO_REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    hisho_cli(env, "migrate")
    key_id, token = cli_key(env, "commands:write", "state:read")
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"e2e-{uuid4()}"}
    with ingress_process(env, tmp_path) as ingress:
        async with (
            httpx.AsyncClient(base_url=ingress.url, timeout=10) as client,
            tap(amqp, "SubmitPlan") as commands,
        ):
            ready = await client.get("/readyz")
            first = await client.post(
                "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=headers
            )
            other = await client.post(
                "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=headers
            )
            fresh = await client.post(
                "/v1/commands/SubmitPlan",
                json={"plan_id": str(uuid4())},
                headers={"Authorization": headers["Authorization"]},
            )
            status = await client.get(fresh.headers["location"], headers=headers)
            published = await commands.from_actors(key_id)
        assert ingress.stop() == 0
    assert ready.json()["checks"]["redis"].startswith("degraded: unreachable")
    assert (first.status_code, other.status_code, fresh.status_code) == (202, 409, 202)
    assert other.json()["type"] == "https://hisho.dev/problems/idempotency-conflict"
    assert status.status_code == 200
    # No processor serves this session's vhost; were one running, it would have rejected it.
    assert status.json()["status"] in {"accepted", "rejected"}
    ids = [env["id"] for env in published]
    assert ids == [first.json()["command_id"], fresh.json()["command_id"]]
