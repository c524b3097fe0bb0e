"""compose.yaml runs the same stack as the launcher: loopback ports, health checks, plugins."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from infra.settings import PROJECT_ROOT, Settings

COMPOSE = PROJECT_ROOT / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _published(service: dict[str, Any]) -> dict[int, str]:
    """container port -> host binding ("127.0.0.1:35672")."""
    result = {}
    for entry in service.get("ports", []):
        host_ip, host_port, container_port = str(entry).split(":")
        result[int(container_port)] = f"{host_ip}:{host_port}"
    return result


def test_compose_defines_rabbitmq_postgres_and_redis(compose: dict[str, Any]) -> None:
    assert {"rabbitmq", "postgres", "redis"} <= set(compose["services"])
    assert compose["services"]["rabbitmq"]["image"].startswith("rabbitmq:3.13-management")
    assert int(compose["services"]["postgres"]["image"].split(":")[1]) >= 15
    assert compose["services"]["redis"]["image"].startswith("redis:7")


def test_every_published_port_is_bound_to_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for entry in service.get("ports", []):
            assert str(entry).startswith("127.0.0.1:"), f"{name} publishes {entry}"


def test_published_ports_are_those_the_settings_default_to(compose: dict[str, Any]) -> None:
    defaults = Settings.model_fields
    services = compose["services"]
    amqp = defaults["stack_amqp_port"].default
    assert _published(services["rabbitmq"])[5672] == f"127.0.0.1:{amqp}"
    management = defaults["stack_amqp_management_port"].default
    assert _published(services["rabbitmq"])[15672] == f"127.0.0.1:{management}"
    postgres = defaults["stack_postgres_port"].default
    assert _published(services["postgres"])[5432] == f"127.0.0.1:{postgres}"
    assert (
        _published(services["redis"])[6379] == f"127.0.0.1:{defaults['stack_redis_port'].default}"
    )


def test_every_server_has_a_health_check(compose: dict[str, Any]) -> None:
    for name in ("rabbitmq", "postgres", "redis"):
        check = compose["services"][name]["healthcheck"]
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert len(check["test"]) > 1, name


def test_rabbitmq_enables_consistent_hash_stream_and_management(compose: dict[str, Any]) -> None:
    mounted = {c["source"]: c["target"] for c in compose["services"]["rabbitmq"]["configs"]}
    plugins_config = next(src for src, dst in mounted.items() if dst.endswith("/enabled_plugins"))
    content = compose["configs"][plugins_config]["content"]
    assert re.fullmatch(r"\[[a-z_,]+\]\.\s*", content)
    plugins = set(content.strip()[1:-2].split(","))
    assert plugins == {
        "rabbitmq_management",
        "rabbitmq_consistent_hash_exchange",
        "rabbitmq_stream",
    }


def test_postgres_and_rabbitmq_use_the_hisho_credentials(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_USER"] == "hisho"
    assert postgres["POSTGRES_DB"] == "hisho"
    rabbitmq = compose["services"]["rabbitmq"]["environment"]
    assert (rabbitmq["RABBITMQ_DEFAULT_USER"], rabbitmq["RABBITMQ_DEFAULT_PASS"]) == (
        "hisho",
        "hisho",
    )


def _compose_cli() -> list[str] | None:
    """`docker compose` or `docker-compose`, if one that runs without an engine is on PATH."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for argv in candidates:
        if shutil.which(argv[0]) is None:
            continue
        probe = subprocess.run([*argv, "version"], capture_output=True, check=False, timeout=30)
        if probe.returncode == 0:
            return argv
    return None


def test_compose_file_is_consistent_and_accepted_by_docker_compose(
    compose: dict[str, Any],
) -> None:
    for service in compose["services"].values():
        for config in service.get("configs", []):
            assert config["source"] in compose["configs"]
        for volume in service.get("volumes", []):
            name = str(volume).split(":", 1)[0]
            assert name.startswith(("/", ".")) or name in compose["volumes"]
    cli = _compose_cli()
    if cli is None:  # no usable CLI here: the structural checks above are what we can do
        return
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_every_hisho_component_runs_as_a_service_after_prepare(compose: dict[str, Any]) -> None:
    from hisho.cli.up import components  # noqa: PLC0415  (the CLI is heavier than the YAML)

    services = compose["services"]
    for name in components():
        service = services[name]
        assert service["command"] == ["hisho", "run", name]
        assert service["depends_on"] == {"prepare": {"condition": "service_completed_successfully"}}
        assert service["environment"]["HISHO_AMQP_URL"].startswith("amqp://hisho:hisho@rabbitmq")
    assert "hisho migrate" in services["prepare"]["command"][-1]
