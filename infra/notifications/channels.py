"""The external channels a delivery consumer sends through, by notification channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from events.notification import NotificationChannel
from infra.notifications.smtp import SmtpChannel
from infra.notifications.webhook import HttpxWebhookChannel

if TYPE_CHECKING:
    from infra.notifications.channel import Channel
    from infra.settings import Settings


@dataclass(frozen=True)
class Channels:
    """E-mail and chat: the channels outside PostgreSQL (in-app is a row in the unit)."""

    email: Channel
    chat: Channel

    def __getitem__(self, channel: NotificationChannel) -> Channel:
        if channel is NotificationChannel.EMAIL:
            return self.email
        if channel is NotificationChannel.CHAT_WEBHOOK:
            return self.chat
        raise KeyError(channel)


def channels_for(settings: Settings) -> Channels:
    """SMTP and the chat webhook, configured by `HISHO_SMTP_*` and `HISHO_CHAT_WEBHOOK_*`."""
    return Channels(email=SmtpChannel(settings), chat=HttpxWebhookChannel(settings))
