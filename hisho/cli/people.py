"""`hisho people add|list|show|update|erase`: the people directory, from the command line.

Each change is written with its event (`events.person`), acting as `system:cli`. Bad input
ends with one line on stderr and exit code 2 before anything is read or written; an unknown
or already present person with exit code 1.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import asyncpg
import typer
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from events import Actor
from events.fields import Principal
from events.notification import NotificationChannel, NotificationPriority
from infra.db.engine import create_engine
from infra.db.people import SqlPeople
from infra.message_context import MessageContext
from infra.people import (
    NewPerson,
    NotificationPreferences,
    Person,
    PersonChanges,
    PersonExistsError,
    PersonNotFoundError,
)
from infra.settings import load_settings
from producers.ingress.storable import unstorable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

CLI_ACTOR = Actor.system("cli")
_PAGE = 200
_PRINCIPAL: TypeAdapter[str] = TypeAdapter(Principal)

app = typer.Typer(help="Add, list, show, change and erase people (contact points stay here).")

_ID = Annotated[
    str,
    typer.Argument(help="The principal id: key:<id>, user:<issuer>/<sub>, persona:<id>, ..."),
]
# Channels and priorities are checked by the model (one line on a bad value, as for the rest).
_CHANNELS = Annotated[
    list[str] | None,
    typer.Option(
        "--channel",
        help=f"{'|'.join(NotificationChannel)}: a channel to notify on; repeat for several.",
    ),
]
_NO_CHANNELS = Annotated[bool, typer.Option("--no-channels", help="Notify on no channel.")]
_PRIORITY = Annotated[
    str | None,
    typer.Option(
        "--min-priority",
        help=f"{'|'.join(NotificationPriority)}: skip notifications below this priority.",
    ),
]
_DIGEST = Annotated[
    bool | None, typer.Option("--digest/--no-digest", help="Gather notifications into a digest.")
]
_EMAIL = Annotated[str | None, typer.Option("--email", help="An e-mail address.")]
_WEBHOOK = Annotated[str | None, typer.Option("--webhook", help="A chat webhook URL (http/https).")]


def _fail(message: str, code: int) -> NoReturn:
    print(f"hisho: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _valid(model: type[M], fields: dict[str, Any]) -> M:
    """`fields` as `model`, or one line naming the first bad field and exit code 2."""
    try:
        value = model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "input"
        _fail(f"invalid {where}: {first['msg']}", 2)
    if errors := unstorable(value, ()):
        first_error = errors[0]
        _fail(f"invalid {'.'.join(map(str, first_error['loc']))}: {first_error['msg']}", 2)
    return value


def _principal(principal_id: str) -> str:
    try:
        return _PRINCIPAL.validate_python(principal_id)
    except ValidationError as exc:
        _fail(f"invalid principal_id: {exc.errors()[0]['msg']}", 2)


def _with_people(work: Callable[[SqlPeople], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(load_settings(), pool_size=1)
        try:
            return await work(SqlPeople(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except PersonExistsError as exc:
        _fail(f"{exc} is already in the directory", 1)
    except PersonNotFoundError as exc:
        _fail(f"no person {exc}", 1)
    except (OSError, TimeoutError, SQLAlchemyError, asyncpg.PostgresError) as exc:
        _fail(f"cannot reach the database: {exc!r}", 1)


def _preferences(
    base: NotificationPreferences,
    channels: list[str] | None,
    no_channels: bool,
    priority: str | None,
    digest: bool | None,
) -> dict[str, Any]:
    if channels and no_channels:
        _fail("give --channel or --no-channels, not both", 2)
    fields: dict[str, Any] = base.model_dump()
    if channels or no_channels:
        fields["channels"] = [] if no_channels else channels
    if priority is not None:
        fields["min_priority"] = priority
    if digest is not None:
        fields["digest"] = digest
    return fields


def _context() -> MessageContext:
    return MessageContext.start(CLI_ACTOR)


@app.command("add")
def add_command(  # noqa: PLR0917  (typer passes every option positionally)
    principal_id: _ID,
    name: Annotated[str, typer.Option("--name", help="The display name.")],
    email: _EMAIL = None,
    webhook: _WEBHOOK = None,
    channels: _CHANNELS = None,
    no_channels: _NO_CHANNELS = False,
    priority: _PRIORITY = None,
    digest: _DIGEST = None,
) -> None:
    """Add a person to the directory."""
    preferences = _preferences(NotificationPreferences(), channels, no_channels, priority, digest)
    person = _valid(
        NewPerson,
        {
            "principal_id": principal_id,
            "display_name": name,
            "email": email,
            "chat_webhook_url": webhook,
            "preferences": preferences,
        },
    )
    _with_people(lambda people: people.register(person, context=_context()))
    print(f"added {person.principal_id}")


@app.command("list")
def list_command() -> None:
    """List every person: principal id, display name, e-mail, webhook."""

    async def every(people: SqlPeople) -> list[Person]:
        found: list[Person] = []
        after: str | None = None
        while True:
            page, after = await people.page(after=after, limit=_PAGE)
            found += page
            if after is None:
                return found

    for person in _with_people(every):
        contacts = f"{person.email or '-'}  {person.chat_webhook_url or '-'}"
        print(f"{person.principal_id}  {person.display_name}  {contacts}")


@app.command("show")
def show_command(principal_id: _ID) -> None:
    """Print one person as JSON."""
    key = _principal(principal_id)
    person = _with_people(lambda people: people.get(key))
    if person is None:
        _fail(f"no person {key}", 1)
    print(person.model_dump_json(indent=2))


@app.command("update")
def update_command(  # noqa: PLR0917  (typer passes every option positionally)
    principal_id: _ID,
    name: Annotated[str | None, typer.Option("--name", help="A new display name.")] = None,
    email: _EMAIL = None,
    no_email: Annotated[bool, typer.Option("--no-email", help="Remove the e-mail.")] = False,
    webhook: _WEBHOOK = None,
    no_webhook: Annotated[bool, typer.Option("--no-webhook", help="Remove the URL.")] = False,
    channels: _CHANNELS = None,
    no_channels: _NO_CHANNELS = False,
    priority: _PRIORITY = None,
    digest: _DIGEST = None,
) -> None:
    """Change some of a person's fields; preferences not named stay as they are."""
    key = _principal(principal_id)
    fields: dict[str, Any] = {} if name is None else {"display_name": name}
    for option, value, remove in (("email", email, no_email), ("webhook", webhook, no_webhook)):
        if value is not None and remove:
            _fail(f"give --{option} or --no-{option}, not both", 2)
        if value is not None or remove:
            fields["email" if option == "email" else "chat_webhook_url"] = value
    changes = _valid(PersonChanges, fields)  # checked before anything is read
    preferring = bool(channels or no_channels or priority is not None or digest is not None)
    if preferring:  # the values are checked before anything is read, too
        given = _preferences(NotificationPreferences(), channels, no_channels, priority, digest)
        _valid(NotificationPreferences, given)

    async def change(people: SqlPeople) -> tuple[str, ...]:
        stored = await people.get(key)
        if stored is None:
            raise PersonNotFoundError(key)
        wanted = changes
        if preferring:
            merged = _preferences(stored.preferences, channels, no_channels, priority, digest)
            wanted = _valid(PersonChanges, {**fields, "preferences": merged})
        _, changed = wanted.applied_to(stored.details)
        await people.update(key, wanted, context=_context())
        return changed

    changed = _with_people(change)
    print(f"updated {key}: {', '.join(changed)}" if changed else f"{key} unchanged")


@app.command("erase")
def erase_command(principal_id: _ID) -> None:
    """Erase a person: their entry is deleted; the event log keeps their id only."""
    key = _principal(principal_id)
    _with_people(lambda people: people.erase(key, context=_context()))
    print(f"erased {key}")
