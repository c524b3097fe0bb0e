"""E-mail over SMTP (aiosmtplib): implicit TLS or STARTTLS, AUTH, the From address from settings.

The `Message-ID` is derived from the notification id (`<id@hisho>`), so every attempt of one
notification is the same message to the receiving side. SMTP has no idempotency key the
server must honour, so one window remains: the server accepted the message and the
consumer crashed (or lost its database) before recording the effect. The message comes
back and is sent again: at most one duplicate per crash, carrying the same Message-ID
(mail clients and many servers collapse it). The window is the time from the server's
`250` after DATA to the commit of the consumer's unit: a few milliseconds.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from typing import TYPE_CHECKING

import aiosmtplib

from infra.notifications.channel import ChannelRefused, ChannelUnavailable

if TYPE_CHECKING:
    from infra.notifications.channel import Delivery
    from infra.people import Person
    from infra.settings import Settings

_PERMANENT = 500  # SMTP: 5yz is a permanent failure, 4yz a transient one


def message_id_for(delivery: Delivery) -> str:
    """The `Message-ID` of a notification's e-mail: the same on every attempt."""
    return f"<{delivery.notification_id}@hisho>"


class SmtpChannel:
    """`Channel` over SMTP, configured by `HISHO_SMTP_*`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def message(self, delivery: Delivery, address: str) -> EmailMessage:
        """The e-mail of a notification to `address`."""
        message = EmailMessage()
        message["From"] = self._settings.smtp_from
        message["To"] = address
        message["Subject"] = delivery.subject
        message["Message-ID"] = message_id_for(delivery)
        message["Date"] = formatdate(usegmt=True)
        message["X-Hisho-Notification-Id"] = delivery.key
        message["X-Priority"] = delivery.priority
        message.set_content(delivery.body)
        return message

    async def send(self, delivery: Delivery, person: Person) -> None:
        """Hand the e-mail to the configured server."""
        if person.email is None:
            raise ChannelRefused(f"{person.principal_id} has no e-mail address")
        settings = self._settings
        password = settings.smtp_password
        try:
            await aiosmtplib.send(
                self.message(delivery, person.email),
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                use_tls=settings.smtp_tls,
                start_tls=settings.smtp_starttls,
                username=settings.smtp_username,
                password=None if password is None else password.get_secret_value(),
                timeout=settings.smtp_timeout,
                cert_bundle=None if settings.smtp_ca_file is None else str(settings.smtp_ca_file),
            )
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as exc:
            raise _classified(exc) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise ChannelUnavailable(f"SMTP server unavailable: {type(exc).__name__}") from exc


def _classified(exc: aiosmtplib.SMTPException) -> Exception:
    codes = (
        [refused.code for refused in exc.recipients]
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused)
        else [getattr(exc, "code", _PERMANENT)]
    )
    reason = f"SMTP server answered {', '.join(map(str, codes))}"
    if all(code >= _PERMANENT for code in codes):
        return ChannelRefused(reason)
    return ChannelUnavailable(reason)
