"""Configuration: one `Settings`, read from `HISHO_*` environment variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AmqpDsn,
    Field,
    HttpUrl,
    PostgresDsn,
    RedisDsn,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

Port = Annotated[int, Field(ge=1, le=65535)]
# Asymmetric JWS algorithms only: a JWKS key is public, so HS*/none can never be allowed for it.
JwtAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]
_MIN_JWT_SECRET = 32  # bytes: RFC 7518 3.2 wants an HS256 key at least as long as the hash


class SettingsError(Exception):
    """A `HISHO_*` variable has a value hisho cannot use."""


class Settings(BaseSettings):
    """Everything hisho reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="HISHO_", extra="ignore", frozen=True)

    amqp_url: AmqpDsn | None = None
    database_url: PostgresDsn | None = None
    redis_url: RedisDsn | None = None

    stack_dir: Path = PROJECT_ROOT / ".hisho" / "stack"
    stack_amqp_port: Port = 35672
    stack_amqp_dist_port: Port = 35673
    stack_amqp_management_port: Port = 35674
    stack_epmd_port: Port = 35675
    stack_postgres_port: Port = 35432
    stack_redis_port: Port = 36379

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "console", "json"] = "auto"

    relay_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    relay_poll_interval: Annotated[float, Field(gt=0, le=60)] = 0.5
    relay_notify: bool = False
    relay_confirm_window: Annotated[int, Field(ge=1, le=100_000)] = 1000
    relay_standbys: Annotated[int, Field(ge=0, le=8)] = 1  # hot standby relays `hisho up` runs

    scheduler_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 1000  # timers per transaction
    scheduler_poll_interval: Annotated[float, Field(gt=0, le=60)] = 0.1  # seconds, at most
    scheduler_standbys: Annotated[int, Field(ge=0, le=8)] = 1  # hot standby schedulers of `up`

    ingress_host: str = "127.0.0.1"
    ingress_port: Port = 8080
    ingress_max_body_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024
    ingress_confirm_timeout: Annotated[float, Field(gt=0, le=30)] = 2.0
    ingress_rate_limit: Annotated[int, Field(ge=1)] = 1200  # requests per key per window
    ingress_rate_window_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    ingress_idempotency_ttl_seconds: Annotated[int, Field(ge=60)] = 24 * 3600
    ingress_accepted_ttl_seconds: Annotated[int, Field(ge=60)] = 3600
    ingress_key_cache_seconds: Annotated[float, Field(ge=0, le=300)] = 5.0
    ingress_redis_timeout: Annotated[float, Field(gt=0, le=10)] = 0.25
    # Live push of in-app notifications (producers/ingress/push, docs/notifications.md).
    push_heartbeat_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    push_queue_limit: Annotated[int, Field(ge=1, le=100_000)] = 256  # per client, then cut off
    push_replay_limit: Annotated[int, Field(ge=1, le=10_000)] = 1000  # missed, per reconnect
    push_send_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0  # one write
    push_retry_ms: Annotated[int, Field(ge=0, le=600_000)] = 1000  # SSE `retry:` for clients
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_url: HttpUrl | None = None  # the identity provider's public signing keys
    jwt_algorithms: Annotated[tuple[JwtAlgorithm, ...], NoDecode, Field(min_length=1)] = (
        "RS256",
        "ES256",
    )
    jwt_jwks_cache_seconds: Annotated[float, Field(ge=1, le=86_400)] = 300.0
    jwt_jwks_refetch_seconds: Annotated[float, Field(ge=0.1, le=3600)] = 5.0  # unknown kid
    jwt_jwks_timeout: Annotated[float, Field(gt=0, le=30)] = 2.0
    jwt_leeway_seconds: Annotated[float, Field(ge=0, le=300)] = 0.0  # clock skew on exp/nbf
    jwt_key: SecretStr | None = None  # an HS256 shared secret; never a public key

    # Notification delivery (`infra.notifications`): e-mail over SMTP, chat webhooks.
    smtp_host: str = "127.0.0.1"
    smtp_port: Port = 25
    smtp_tls: bool = False  # implicit TLS from the first byte (port 465)
    smtp_starttls: bool = False  # upgrade a plain connection with STARTTLS (port 587)
    smtp_ca_file: Path | None = None  # CA bundle to verify the server with (default: system)
    smtp_username: str | None = None  # log in (AUTH) when set
    smtp_password: SecretStr | None = None
    smtp_from: str = "hisho@localhost"  # the From address of every notification e-mail
    smtp_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    chat_webhook_timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    # Off by default (SSRF guard): webhooks to loopback, private or link-local addresses.
    chat_webhook_allow_private: bool = False

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """`RS256,ES256` (or a JSON list) from the environment."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return value

    @field_validator("jwt_jwks_url", "jwt_key")
    @classmethod
    def _jwt_needs_issuer_and_audience(cls, value: object, info: ValidationInfo) -> object:
        """JWTs are only ever accepted for one issuer and one audience."""
        if value is not None and not (
            info.data.get("jwt_issuer") and info.data.get("jwt_audience")
        ):
            raise ValueError("needs HISHO_JWT_ISSUER and HISHO_JWT_AUDIENCE too")
        return value

    @field_validator("jwt_key")
    @classmethod
    def _hs256_secret_only(cls, value: SecretStr | None) -> SecretStr | None:
        """A public key here would let anyone sign HS256 tokens with it (algorithm confusion)."""
        if value is None:
            return None
        secret = value.get_secret_value().strip()
        if secret.startswith(("-----BEGIN", "ssh-", "ecdsa-", "{")):
            raise ValueError("is an HS256 secret, not a key: serve keys from HISHO_JWT_JWKS_URL")
        if len(secret.encode()) < _MIN_JWT_SECRET:
            raise ValueError(f"an HS256 secret needs at least {_MIN_JWT_SECRET} bytes")
        return value

    @property
    def stack_ports(self) -> dict[str, int]:
        """Ports of the local stack: those it recorded when it started, else the configured ones."""
        ports = {
            "amqp": self.stack_amqp_port,
            "amqp_dist": self.stack_amqp_dist_port,
            "amqp_management": self.stack_amqp_management_port,
            "epmd": self.stack_epmd_port,
            "postgres": self.stack_postgres_port,
            "redis": self.stack_redis_port,
        }
        recorded = self.stack_dir / "ports.json"
        if recorded.is_file():
            ports.update(json.loads(recorded.read_text()))
        return ports

    @property
    def uses_local_stack(self) -> bool:
        """True when at least one service is not pointed elsewhere by a `HISHO_*_URL`."""
        return None in (self.amqp_url, self.database_url, self.redis_url)

    @property
    def amqp(self) -> str:
        """The AMQP URL in force."""
        if self.amqp_url is not None:
            return str(self.amqp_url)
        return f"amqp://hisho:hisho@127.0.0.1:{self.stack_ports['amqp']}/"

    @property
    def database(self) -> str:
        """The SQLAlchemy (asyncpg) database URL in force."""
        if self.database_url is not None:
            return str(self.database_url).replace("postgresql://", "postgresql+asyncpg://", 1)
        return f"postgresql+asyncpg://hisho@127.0.0.1:{self.stack_ports['postgres']}/hisho"

    @property
    def database_dsn(self) -> str:
        """The same database as a plain libpq DSN (for asyncpg connections of our own)."""
        return self.database.replace("postgresql+asyncpg://", "postgresql://", 1)

    @property
    def redis(self) -> str:
        """The Redis URL in force."""
        if self.redis_url is not None:
            return str(self.redis_url)
        return f"redis://127.0.0.1:{self.stack_ports['redis']}/0"


def load_settings(**overrides: object) -> Settings:
    """Build `Settings`, turning a validation error into one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        raise SettingsError(f"HISHO_{field.upper()}: {first['msg']}") from exc
