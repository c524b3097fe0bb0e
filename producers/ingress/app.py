"""The ingress application factory: built on the process's `App`, any part replaceable."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from events import catalog as default_catalog
from infra.auth import JwtVerifier, Scope, SqlApiKeyStore, TokenRevocations
from infra.clock import utc_now
from infra.db.ingress_fallback import SqlIngressFallback
from infra.db.notification_list import SqlNotificationList
from infra.db.people import SqlPeople
from infra.redis_store import RedisIngressStore
from infra.telemetry import tracer_provider
from producers.ingress.accept import CommandAcceptor
from producers.ingress.auth import Authenticator, guard
from producers.ingress.commands import add_command_routes, unknown_command
from producers.ingress.fallback import FallbackIngressStore
from producers.ingress.fast_path import CommandFastPath
from producers.ingress.health import add_health_routes
from producers.ingress.limits import BodyLimitMiddleware
from producers.ingress.methods import MethodFallback
from producers.ingress.notifications import add_notification_routes
from producers.ingress.parked import add_parked_routes, parked_console
from producers.ingress.people import add_people_routes
from producers.ingress.problems import finish_openapi, install_problem_handlers
from producers.ingress.publisher import AmqpCommandPublisher
from producers.ingress.push.routes import Push, add_push_routes
from producers.ingress.rate_limit import RateLimiter
from producers.ingress.state import StateReader, add_state_routes
from producers.ingress.status import StatusReader

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from datetime import datetime

    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import Catalog
    from infra.app import App
    from infra.clock import Clock
    from infra.parked import ParkedConsole
    from infra.settings import Settings
    from producers.ingress.notifications import NotificationListStore
    from producers.ingress.people import PeopleStore
    from producers.ingress.ports import (
        CommandPublisher,
        IngressFallback,
        IngressStore,
        KeyStore,
    )


def create_app(
    resources: App | None = None,
    *,
    settings: Settings | None = None,
    publisher: CommandPublisher | None = None,
    key_store: KeyStore | None = None,
    redis: IngressStore | None = None,
    fallback: IngressFallback | None = None,
    engine: AsyncEngine | None = None,
    clock: Clock | None = None,
    jwt: JwtVerifier | None = None,
    tracing: TracerProvider | None = None,
    commands: Catalog = default_catalog,
    people: PeopleStore | None = None,
    parked: ParkedConsole | None = None,
    push: Push | None = None,
    notifications: NotificationListStore | None = None,
) -> FastAPI:
    """Build the ingress on the process's `resources`; a part given here replaces its own.

    The engine, the publisher and Redis come from `resources` unless given (the App owns
    and closes them); the key store and the fallback store are built on the engine.
    """
    settings = settings or _part(resources, "settings")
    engine = engine or _part(resources, "engine")
    if publisher is None:
        publisher = AmqpCommandPublisher(
            _part(resources, "publisher"), confirm_timeout=settings.ingress_confirm_timeout
        )
    if redis is None:
        redis = RedisIngressStore(_part(resources, "redis"), timeout=settings.ingress_redis_timeout)
    # Redis is the fast path; PostgreSQL keeps its records and markers while it is down.
    store = FallbackIngressStore(redis, fallback or SqlIngressFallback(engine))
    parts = _Parts(
        settings=settings,
        publisher=publisher,
        key_store=key_store or SqlApiKeyStore(engine),
        redis=store,
        engine=engine,
        clock=clock or (resources.clock if resources else utc_now),
        jwt=jwt or _jwt_verifier(settings, resources, engine),
        tracing=tracing or (resources.tracing if resources else tracer_provider("hisho-ingress")),
        people=people or SqlPeople(engine),
        parked=parked or (parked_console(resources, engine) if resources else None),
        push=push or Push.build(settings, resources.amqp if resources else None, engine),
        notifications=notifications or SqlNotificationList(engine),
    )
    app = FastAPI(
        title="hisho ingress",
        version="1",
        description="Publish commands to hisho and read what became of them.",
        lifespan=_lifespan(publisher, parts.push),
        # The ingress starts/continues the W3C trace itself (one span per command, see
        # accept.py); FastAPI's own per-request, per-dependency spans and metrics are off.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.push = parts.push  # serve.run ends its streams before uvicorn shuts down
    install_problem_handlers(app)
    fast_path = _include_routers(app, parts, commands)
    # Last: 405 with Allow and OPTIONS for every known path (FastAPI's docs routes included).
    app.router.routes.append(MethodFallback(app.router.routes, not_found=unknown_command))
    # The last added is the outermost: the body limit buffers, then the fast path answers
    # well-formed command POSTs and passes the rest on to FastAPI.
    app.add_middleware(CommandFastPath, commands=commands, **fast_path)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.ingress_max_body_bytes)
    _problem_openapi(app)
    return app


def _part(resources: App | None, name: str) -> Any:  # noqa: ANN401  (one of the App's fields)
    if resources is None:
        raise TypeError(f"create_app needs the process's App, or `{name}=` given")
    return getattr(resources, name)


def _jwt_verifier(
    settings: Settings, resources: App | None, engine: AsyncEngine
) -> JwtVerifier | None:
    """The verifier `HISHO_JWT_*` configure; its revocation list on the App's Redis and engine."""
    if settings.jwt_jwks_url is None and settings.jwt_key is None:
        return None
    redis = _part(resources, "redis")
    revocations = TokenRevocations(redis, engine, timeout=settings.ingress_redis_timeout)
    return JwtVerifier.from_settings(settings, revocations=revocations)


@dataclass(frozen=True)
class _Parts:
    settings: Settings
    publisher: CommandPublisher
    key_store: KeyStore
    redis: IngressStore
    engine: AsyncEngine
    clock: Callable[[], datetime]
    jwt: JwtVerifier | None
    tracing: TracerProvider
    people: PeopleStore
    parked: ParkedConsole | None
    push: Push
    notifications: NotificationListStore


def _include_routers(app: FastAPI, parts: _Parts, commands: Catalog) -> dict[str, Any]:
    """Add every route; return what the fast path shares with the command routes."""
    settings = parts.settings
    authenticator = Authenticator(
        parts.key_store, jwt=parts.jwt, cache_seconds=settings.ingress_key_cache_seconds
    )
    limiter = RateLimiter(
        parts.redis,
        limit=settings.ingress_rate_limit,
        window=settings.ingress_rate_window_seconds,
    )
    statuses = StatusReader(parts.engine, parts.redis)
    acceptor = CommandAcceptor(
        publisher=parts.publisher,
        store=parts.redis,
        records=statuses,
        tracer=parts.tracing.get_tracer("hisho.ingress"),
        clock=parts.clock,
        idempotency_ttl=settings.ingress_idempotency_ttl_seconds,
        accepted_ttl=settings.ingress_accepted_ttl_seconds,
    )
    # Routes go straight onto the app's router, commands first: they are the hot path, and
    # an included router would be matched twice per request.
    add_command_routes(
        app.router,
        commands=commands,
        acceptor=acceptor,
        statuses=statuses,
        writer=guard(authenticator, limiter, Scope.COMMANDS_WRITE, json_body=True),
        reader=guard(authenticator, limiter, Scope.COMMANDS_WRITE, Scope.STATE_READ),
    )
    add_health_routes(app.router, publisher=parts.publisher, engine=parts.engine, store=parts.redis)
    add_state_routes(
        app.router,
        states=StateReader(parts.engine),
        reader=guard(authenticator, limiter, Scope.STATE_READ),
    )
    anyone = tuple(Scope)  # any authenticated caller; the routes decide admin or self
    add_people_routes(
        app.router,
        people=parts.people,
        reader=guard(authenticator, limiter, *anyone),
        writer=guard(authenticator, limiter, *anyone, json_body=True),
    )
    add_parked_routes(
        app.router,
        console=parts.parked,
        reader=guard(authenticator, limiter, Scope.ADMIN),
        writer=guard(authenticator, limiter, Scope.ADMIN, json_body=True),
    )
    add_notification_routes(
        app.router,
        notifications=parts.notifications,
        clock=parts.clock,
        reader=guard(authenticator, limiter, *anyone),
    )
    add_push_routes(
        app.router,
        push=parts.push,
        authenticator=authenticator,
        limiter=limiter,
        reader=guard(authenticator, limiter, *anyone),
    )
    return {"authenticator": authenticator, "limiter": limiter, "acceptor": acceptor}


def _lifespan(
    publisher: CommandPublisher, push: Push
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        push.start()
        await publisher.start(wait=2.0)  # serve at once when the broker is up; 503s until then
        try:
            yield
        finally:
            await push.close()

    return lifespan


def _problem_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish_openapi(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
