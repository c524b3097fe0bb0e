"""`hisho run ingress` and `hisho keys` as a user runs them: a key made on the command line
posts a command that lands on the broker, a revoked key stops working, SIGTERM exits 0."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING
from uuid import uuid4

import httpx

from tests.ingress_support import cli_key, hisho_cli, ingress_process, service_env, tap

if TYPE_CHECKING:
    from pathlib import Path

    from aio_pika.abc import AbstractRobustConnection

    from infra.settings import Settings

REVOCATION_BOUND = 10.0


async def test_cli_key_posts_a_command_then_revocation_and_sigterm(
    settings: Settings, amqp: AbstractRobustConnection, tmp_path: Path
) -> None:
    env = service_env(settings, HISHO_INGRESS_KEY_CACHE_SECONDS="0.5")
    hisho_cli(env, "migrate")
    key_id, token = cli_key(env, "commands:write", "state:read")
    assert key_id in hisho_cli(env, "keys", "list")
    with ingress_process(env, tmp_path) as ingress:
        async with (
            httpx.AsyncClient(base_url=ingress.url, timeout=10) as client,
            tap(amqp, "SubmitPlan") as commands,
        ):
            headers = {"Authorization": f"Bearer {token}"}
            accepted = await client.post(
                "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=headers
            )
            assert accepted.status_code == 202, accepted.text
            [message] = await commands.take(1)
            envelope = json.loads(message.body)
            assert envelope["id"] == accepted.json()["command_id"]
            assert envelope["actor"] == {"kind": "api_key", "id": key_id}
            status = await client.get(accepted.headers["location"], headers=headers)
            assert status.json()["status"] in {"accepted", "processed", "rejected"}

            hisho_cli(env, "keys", "revoke", key_id)
            async with asyncio.timeout(REVOCATION_BOUND):  # the key cache expires
                while (await client.get("/v1/plans", headers=headers)).status_code != 401:
                    await asyncio.sleep(0.1)
        assert ingress.stop() == 0
