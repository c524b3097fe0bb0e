"""A RabbitMQ and PostgreSQL of a test's own (tmp dir, free ports), for outages on purpose.

Chaos tests stop and restart these servers; the suite's stack is never touched.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from infra.settings import Settings
from infra.stack import Stack
from infra.stack.ports import ephemeral_port

if TYPE_CHECKING:
    from collections.abc import Iterator

PORT_SETTINGS = (
    "stack_amqp_port",
    "stack_amqp_dist_port",
    "stack_amqp_management_port",
    "stack_epmd_port",
    "stack_postgres_port",
    "stack_redis_port",
)


@contextlib.contextmanager
def private_stack(prefix: str) -> Iterator[tuple[Stack, Settings]]:
    """Start RabbitMQ and PostgreSQL under a new tmp dir on free ports; remove all after."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)  # PostgreSQL runs as another user and must reach its data dir
    ports: list[int] = []
    for _ in PORT_SETTINGS:
        ports.append(ephemeral_port([*ports, *(p + 4 for p in ports)]))
    settings = Settings(
        amqp_url=None,
        database_url=None,
        redis_url=None,
        stack_dir=root / "stack",
        **dict(zip(PORT_SETTINGS, ports, strict=True)),  # type: ignore[arg-type]
    )
    stack = Stack(settings)
    try:
        stack.up(["rabbitmq", "postgres"])
        yield stack, settings
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)
