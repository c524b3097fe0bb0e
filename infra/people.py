"""The people directory's model: a person, their contact points and notification preferences.

A person is keyed by their principal id (`events.base.Actor.principal`). The directory is a
mutable table outside the event log (`infra.db.people`); events carry the principal id only.
`PersonDirectory` is the port readers use (the command processor resolves recipients with it).
"""

from __future__ import annotations

import string
from datetime import datetime
from typing import Annotated, Any, Protocol, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from domain.quiet_hours import QuietHours
from events.fields import Principal
from events.notification import NotificationChannel, NotificationPriority
from events.person import PersonField

PERSON_FIELDS: tuple[PersonField, ...] = get_args(PersonField)
# The prefetch of a consumer whose handlers look people up: a handler holds its unit's
# connection and asks the same pool (the consumer pool, 32) for another, so the messages in
# flight stay under half of it and the pool is never held whole by units waiting for one.
LOOKUP_PREFETCH = 12
DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=200)]

_EMAIL_MAX = 254  # RFC 5321's path limit, less the angle brackets
_LOCAL_MAX = 64
_DOMAIN_MAX = 253
_LABEL_MAX = 63
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_LDH = frozenset(string.ascii_letters + string.digits + "-")
_URL_MAX = 2_000


def email_problem(address: str) -> str | None:
    """Why `address` is not an e-mail address (RFC 5322 dot-atom @ a DNS name), or None."""
    local, _, domain = address.rpartition("@")
    if not local or not domain:
        return "needs a local part, '@' and a domain"
    if len(address) > _EMAIL_MAX or len(local) > _LOCAL_MAX:
        return f"is too long (at most {_LOCAL_MAX} characters before '@', {_EMAIL_MAX} in all)"
    if any(not atom for atom in local.split(".")):
        return "has an empty part between dots before '@'"
    if any(not _local_char(char) for char in local):
        return "has a character not allowed before '@' (quoted local parts are not taken)"
    return _domain_problem(domain)


def _local_char(char: str) -> bool:
    if char.isascii():
        return char in _ATEXT or char == "."
    return char.isprintable() and not char.isspace()  # RFC 6531: UTF-8 local parts


def _domain_problem(domain: str) -> str | None:
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "has a domain that is not a valid DNS name"
    labels = ascii_domain.split(".")
    if len(ascii_domain) > _DOMAIN_MAX or len(labels) < 2:  # noqa: PLR2004  (name.tld)
        return "needs a domain of at least two labels (example.org)"
    for label in labels:
        if not 0 < len(label) <= _LABEL_MAX or not set(label) <= _LDH:
            return "has a domain label that is empty, too long or not letters, digits and '-'"
        if label.startswith("-") or label.endswith("-"):
            return "has a domain label that starts or ends with '-'"
    if labels[-1].isdigit():
        return "has a numeric top-level domain"
    return None


def webhook_problem(url: str) -> str | None:
    """Why `url` is not an http(s) URL with a host, or None."""
    if any(char.isspace() or not char.isprintable() for char in url):
        return "contains spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises for a port that is not a number in range)
    except ValueError as exc:
        return f"is not a URL: {exc}"
    if parts.scheme not in {"http", "https"}:
        return "must use http or https"
    if not parts.hostname:
        return "needs a host"
    return None


def _checked(problem: Any) -> Any:  # noqa: ANN401  (a `str -> str | None` check)
    def check(value: str) -> str:
        reason = problem(value)
        if reason is not None:
            raise ValueError(f"the value {reason}")
        return value

    return AfterValidator(check)


EmailAddress = Annotated[
    str,
    StringConstraints(pattern=r"^[^@]+@[^@]+$", max_length=_EMAIL_MAX),
    _checked(email_problem),
]
WebhookUrl = Annotated[
    str, StringConstraints(pattern=r"^https?://", max_length=_URL_MAX), _checked(webhook_problem)
]


def _distinct(channels: tuple[NotificationChannel, ...]) -> tuple[NotificationChannel, ...]:
    if len(set(channels)) != len(channels):
        raise ValueError("each channel may be named once")
    return channels


class NotificationPreferences(BaseModel):
    """How a person wants to be notified: channels, the lowest priority, digest, quiet hours."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channels: Annotated[
        tuple[NotificationChannel, ...],
        Field(max_length=len(NotificationChannel), json_schema_extra={"uniqueItems": True}),
        AfterValidator(_distinct),
    ] = tuple(NotificationChannel)
    min_priority: NotificationPriority = NotificationPriority.LOW
    digest: StrictBool = False  # gather non-urgent notifications into a periodic digest
    # e-mail/chat below urgent wait for their end; absent (not null) in the JSON when none
    quiet_hours: QuietHours | None = Field(default=None, exclude_if=lambda value: value is None)


class PersonDetails(BaseModel):
    """What a person's entry holds besides its key: display name, contact points, preferences."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    display_name: DisplayName
    email: EmailAddress | None = None
    chat_webhook_url: WebhookUrl | None = None
    preferences: NotificationPreferences = NotificationPreferences()


class NewPerson(PersonDetails):
    """A person to add to the directory."""

    principal_id: Principal


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # absent means "unchanged"; the field is never null


class PersonChanges(BaseModel):
    """A partial update: fields given replace the stored ones (a null e-mail or URL removes it).

    `display_name` and `preferences` cannot be null; `preferences` is replaced as a whole.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Typed without None: a null is refused; None here only stands for "not given".
    display_name: DisplayName = Field(default=None, json_schema_extra=_no_default)  # type: ignore[assignment]
    email: EmailAddress | None = None
    chat_webhook_url: WebhookUrl | None = None
    preferences: NotificationPreferences = Field(default=None, json_schema_extra=_no_default)  # type: ignore[assignment]

    def applied_to(self, details: PersonDetails) -> tuple[PersonDetails, tuple[PersonField, ...]]:
        """`details` with these changes, and the names of the fields whose value changed."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        changed = tuple(
            name
            for name in PERSON_FIELDS
            if name in given and given[name] != getattr(details, name)
        )
        return details.model_copy(update={name: given[name] for name in changed}), changed


class Person(NewPerson):
    """A person as the directory holds them."""

    created_at: datetime
    updated_at: datetime

    @property
    def details(self) -> PersonDetails:
        """The entry without its key and timestamps."""
        return PersonDetails.model_validate(
            self.model_dump(include=set(PersonDetails.model_fields))
        )


class PersonExistsError(Exception):
    """The directory already has a person with this principal id."""


class PersonNotFoundError(Exception):
    """The directory has no person with this principal id (never added, or erased)."""


class PersonDirectory(Protocol):
    """Reads the people directory."""

    async def get(self, principal_id: str) -> Person | None:
        """The person with this principal id; None if unknown or erased."""
        ...
