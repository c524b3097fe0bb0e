"""Chat webhooks (Slack-compatible JSON POST over httpx), behind an SSRF guard.

The body is Slack's incoming-webhook shape (`{"text": ...}`), which Mattermost, Rocket.Chat
and most chat tools accept. Every attempt of a notification carries the same
`Idempotency-Key` and `X-Hisho-Notification-Id` (the notification id), so a receiver that
deduplicates sees one message however often it is sent.

The SSRF guard resolves the URL's host and refuses it when any address is loopback,
private, link-local, multicast, reserved or unspecified, unless
`HISHO_CHAT_WEBHOOK_ALLOW_PRIVATE` is on (tests and on-premises chat servers). Redirects are
not followed (a redirect could lead past the guard). The guard checks the names as they
resolve just before the request; a DNS answer that changes between that check and the
connection is not caught (a documented limit).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from infra.notifications.channel import ChannelRefused, ChannelUnavailable

if TYPE_CHECKING:
    from infra.notifications.channel import Delivery
    from infra.people import Person
    from infra.settings import Settings

_RETRIED = frozenset({408, 425, 429})
_SERVER_ERROR = 500
_SUCCESS = range(200, 300)


def payload(delivery: Delivery) -> dict[str, str]:
    """The Slack-compatible body of a notification."""
    return {"text": f"*{delivery.subject}*\n{delivery.body}"}


async def refused_address(url: str, *, allow_private: bool) -> str | None:
    """Why the guard refuses `url`'s host (a non-public address), or None."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ChannelUnavailable(f"the webhook host does not resolve: {exc}") from exc
    if allow_private:
        return None
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if not address.is_global or address.is_multicast:
            return f"the webhook host resolves to a non-public address ({address})"
    return None


class HttpxWebhookChannel:
    """`Channel` posting to the person's chat webhook URL."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self._allow_private = settings.chat_webhook_allow_private
        self._client = client or httpx.AsyncClient(
            timeout=settings.chat_webhook_timeout, follow_redirects=False
        )

    async def send(self, delivery: Delivery, person: Person) -> None:
        """POST the notification; 2xx is delivered."""
        url = person.chat_webhook_url
        if url is None:
            raise ChannelRefused(f"{person.principal_id} has no chat webhook URL")
        reason = await refused_address(url, allow_private=self._allow_private)
        if reason is not None:
            raise ChannelRefused(reason)
        headers = {"Idempotency-Key": delivery.key, "X-Hisho-Notification-Id": delivery.key}
        try:
            response = await self._client.post(url, json=payload(delivery), headers=headers)
        except httpx.TransportError as exc:  # refused, reset, timed out
            raise ChannelUnavailable(f"chat webhook unreachable: {type(exc).__name__}") from exc
        status = response.status_code
        if status in _SUCCESS:
            return
        if status >= _SERVER_ERROR or status in _RETRIED:
            raise ChannelUnavailable(f"chat webhook answered {status}")
        raise ChannelRefused(f"chat webhook answered {status}")

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
