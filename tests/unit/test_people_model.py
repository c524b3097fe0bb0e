"""The people directory's model: principal ids, contact points, preferences, partial changes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from events import Message, catalog
from events.notification import NotificationChannel, NotificationPriority
from events.person import PersonErased, PersonRegistered, PersonUpdated
from infra.people import (
    NewPerson,
    NotificationPreferences,
    PersonChanges,
    PersonDetails,
    email_problem,
    webhook_problem,
)
from tests.people_fakes import FakePersonDirectory, person

PID = "user:https://issuer.example/sub-1"


def _fails(model: type[Any], **fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        model(**fields)
    return str(caught.value)


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.org",
        "ada.lovelace+hisho@mail.analytical.example",
        "o'brien@example.co.uk",
        "ü-ser@bücher.example",
        "x@xn--bcher-kva.example",
    ],
)
def test_ordinary_email_addresses_are_taken(address: str) -> None:
    assert email_problem(address) is None
    assert PersonDetails(display_name="A", email=address).email == address


@pytest.mark.parametrize(
    "address",
    [
        "ada",
        "@example.org",
        "ada@",
        "ada@@example.org",
        "a..b@example.org",
        ".ada@example.org",
        "ada.@example.org",
        "a da@example.org",
        '"ada"@example.org',
        "ada@localhost",
        "ada@example..org",
        "ada@example.org.",
        "ada@-example.org",
        "ada@example-.org",
        "ada@exa_mple.org",
        "ada@10.0.0.1",
        "ada@[10.0.0.1]",
        "ada\x00@example.org",
        "ada@example.org\n",
        "a" * 65 + "@example.org",
        "ada@" + "a" * 64 + ".org",
        "ada@" + ("a" * 60 + ".") * 5 + "org",
    ],
)
def test_malformed_email_addresses_are_refused(address: str) -> None:
    assert "email" in _fails(PersonDetails, display_name="A", email=address)


@pytest.mark.parametrize(
    "url",
    [
        "https://chat.example/hooks/T0/B0/xyz",
        "http://127.0.0.1:8080/hook",
        "https://[::1]:443/x?y=1#z",
    ],
)
def test_http_and_https_webhook_urls_with_a_host_are_taken(url: str) -> None:
    assert webhook_problem(url) is None
    assert PersonDetails(display_name="A", chat_webhook_url=url).chat_webhook_url == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://chat.example/hook",
        "HTTPS://chat.example/hook",
        "javascript:alert(1)",
        "https://",
        "https:///path-only",
        "https://:443/x",
        "https://chat.example:99999/",
        "https://chat.example:port/",
        "https://[::1/x",
        "https://chat example/",
        "https://chat.example/\x00",
        "chat.example/hook",
    ],
)
def test_other_webhook_urls_are_refused(url: str) -> None:
    assert "chat_webhook_url" in _fails(PersonDetails, display_name="A", chat_webhook_url=url)


@pytest.mark.parametrize(
    "principal_id",
    ["key:0123456789abcdef", PID, "persona:3f0c", "system:relay", "legacy:alice", "key:a b"],
)
def test_namespaced_principal_ids_key_a_person(principal_id: str) -> None:
    assert NewPerson(principal_id=principal_id, display_name="A").principal_id == principal_id


@pytest.mark.parametrize(
    "principal_id", ["alice", "admin:x", "key:", ":x", "key:a\nb", "key:\x00", "k" * 301]
)
def test_other_principal_ids_are_refused(principal_id: str) -> None:
    assert "principal_id" in _fails(NewPerson, principal_id=principal_id, display_name="A")


def test_preferences_default_to_every_channel_every_priority_no_digest() -> None:
    preferences = NotificationPreferences()
    assert preferences.channels == tuple(NotificationChannel)
    assert preferences.min_priority is NotificationPriority.LOW
    assert preferences.digest is False


def test_preferences_refuse_a_repeated_or_unknown_channel_and_a_non_boolean_digest() -> None:
    assert "once" in _fails(NotificationPreferences, channels=("email", "email"))
    _fails(NotificationPreferences, channels=("sms",))
    _fails(NotificationPreferences, digest="yes")
    _fails(NotificationPreferences, min_priority="whenever")
    _fails(NotificationPreferences, colour="red")
    assert NotificationPreferences(channels=()).channels == ()


def test_a_display_name_is_required_and_bounded() -> None:
    _fails(PersonDetails)
    _fails(PersonDetails, display_name="")
    _fails(PersonDetails, display_name="x" * 201)


def test_changes_report_only_the_fields_whose_value_changes() -> None:
    stored = PersonDetails(display_name="Ada", email="ada@example.org")
    changes = PersonChanges.model_validate(
        {"display_name": "Ada", "email": None, "chat_webhook_url": "https://c.example/h"}
    )
    details, changed = changes.applied_to(stored)
    assert changed == ("email", "chat_webhook_url")
    assert details == PersonDetails(display_name="Ada", chat_webhook_url="https://c.example/h")
    assert PersonChanges().applied_to(stored) == (stored, ())


def test_changes_refuse_a_null_display_name_or_preferences() -> None:
    _fails(PersonChanges, display_name=None)
    _fails(PersonChanges, preferences=None)
    schema = PersonChanges.model_json_schema()["properties"]
    assert "default" not in schema["display_name"]
    assert schema["display_name"]["type"] == "string"


def test_person_events_carry_ids_and_field_names_only() -> None:
    fields: dict[type[Message], set[str]] = {
        PersonRegistered: {"principal_id"},
        PersonUpdated: {"principal_id", "changed"},
        PersonErased: {"principal_id"},
    }
    for model, names in fields.items():
        assert set(model.model_fields) == names
        assert catalog.entry_for(model).aggregate == "person"
    _fails(PersonUpdated, principal_id=PID, changed=())
    _fails(PersonUpdated, principal_id=PID, changed=("email_address",))
    assert catalog.entry_for(PersonUpdated).routing_key == "person.updated"


async def test_the_fake_directory_answers_as_the_port_says() -> None:
    ada = person("key:00000000000000a1", email="ada@example.org")
    directory = FakePersonDirectory(ada)
    assert await directory.get("key:00000000000000a1") == ada
    directory.erase("key:00000000000000a1")
    assert await directory.get("key:00000000000000a1") is None


def test_preferences_have_no_quiet_hours_by_default_and_validate_given_ones() -> None:
    assert NotificationPreferences().quiet_hours is None
    given = NotificationPreferences.model_validate(
        {"quiet_hours": {"start": "22:00", "end": "07:00", "time_zone": "Europe/Paris"}}
    )
    assert given.quiet_hours is not None
    assert given.quiet_hours.time_zone == "Europe/Paris"
    _fails(NotificationPreferences, quiet_hours={"start": "22:00", "end": "07:00"})
    _fails(
        NotificationPreferences,
        quiet_hours={"start": "22:00", "end": "07:00", "time_zone": "Nowhere/Land"},
    )


def test_absent_quiet_hours_are_absent_from_the_json_given_ones_round_trip() -> None:
    assert "quiet_hours" not in NotificationPreferences().model_dump(mode="json")
    given = NotificationPreferences.model_validate(
        {"quiet_hours": {"start": "22:00", "end": "07:00", "time_zone": "Europe/Paris"}}
    )
    assert NotificationPreferences.model_validate_json(given.model_dump_json()) == given
