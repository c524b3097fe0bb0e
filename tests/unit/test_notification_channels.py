"""The e-mail and chat channels' pure parts: the message, the error classes, the SSRF guard."""

from __future__ import annotations

import uuid

import aiosmtplib
import pytest

from infra.notifications.channel import ChannelRefused, ChannelUnavailable, Delivery
from infra.notifications.smtp import SmtpChannel, _classified, message_id_for
from infra.notifications.webhook import payload, refused_address
from infra.settings import load_settings

DELIVERY = Delivery(uuid.uuid4(), "high", "Plan awaits you", "Budget needs your vote.")


def test_the_email_is_keyed_by_the_notification_id_and_names_no_one_else() -> None:
    message = SmtpChannel(load_settings(smtp_from="bot@hisho.example")).message(
        DELIVERY, "ana@example.org"
    )
    assert (
        message["Message-ID"] == message_id_for(DELIVERY) == f"<{DELIVERY.notification_id}@hisho>"
    )
    assert (message["From"], message["To"]) == ("bot@hisho.example", "ana@example.org")
    assert message["Subject"] == "Plan awaits you"
    assert message.get_content().strip() == "Budget needs your vote."


def test_an_smtp_4xx_is_tried_again_and_a_5xx_is_refused() -> None:
    busy = aiosmtplib.SMTPResponseException(451, "try later")
    assert isinstance(_classified(busy), ChannelUnavailable)
    assert isinstance(
        _classified(aiosmtplib.SMTPResponseException(550, "no such user")), ChannelRefused
    )
    mixed = aiosmtplib.SMTPRecipientsRefused(
        [
            aiosmtplib.SMTPRecipientRefused(550, "no", "a@x.org"),
            aiosmtplib.SMTPRecipientRefused(452, "full", "b@x.org"),
        ]
    )
    assert isinstance(_classified(mixed), ChannelUnavailable)


def test_the_chat_body_is_slack_compatible() -> None:
    assert payload(DELIVERY) == {"text": "*Plan awaits you*\nBudget needs your vote."}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_the_ssrf_guard_refuses_non_public_addresses_by_default(url: str) -> None:
    assert await refused_address(url, allow_private=False) is not None
    assert await refused_address(url, allow_private=True) is None


async def test_the_ssrf_guard_lets_a_public_address_through() -> None:
    assert await refused_address("https://8.8.8.8/hook", allow_private=False) is None


def test_private_webhooks_are_refused_unless_the_setting_allows_them() -> None:
    assert load_settings().chat_webhook_allow_private is False
    assert load_settings(chat_webhook_allow_private=True).chat_webhook_allow_private is True
