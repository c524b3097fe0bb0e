"""Real local servers the notification channels talk to in tests, on 127.0.0.1, port 0.

`smtp_server()`: an aiosmtpd SMTP server keeping every message it accepted.
`webhook_receiver()`: an HTTP/1.1 server keeping every request, answering the statuses it
is told (`answers`, one per request; 200 when none are left).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from socket import AF_INET, SOCK_STREAM, socket
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from email.message import EmailMessage
    from pathlib import Path

    from aiosmtpd.smtp import Envelope, Session


@dataclass
class SmtpInbox:
    """What the local SMTP server accepted."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)  # AUTH: who logged in
    tls: list[bool] = field(default_factory=list)  # per message: was the session encrypted
    password: str | None = None  # when set, AUTH is required and checked against it
    on_message: Callable[[EmailMessage], None] | None = None  # called once it is kept

    def authenticate(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        """Accept the one password; remember the login."""
        login, password = data.login.decode(), data.password.decode()
        if password != self.password:
            return AuthResult(success=False, handled=False)
        self.logins.append((login, password))
        return AuthResult(success=True)

    async def handle_DATA(  # noqa: N802  (aiosmtpd's hook name)
        self, _server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """Keep the message (and whether it came over TLS); answer 250."""
        self.tls.append(session.ssl is not None)
        raw = envelope.original_content or b""
        self.messages.append(message_from_bytes(raw, policy=default))
        if self.on_message is not None:
            self.on_message(self.messages[-1])
        return "250 OK"


@asynccontextmanager
async def smtp_server(
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
    on_message: Callable[[EmailMessage], None] | None = None,
) -> AsyncIterator[SmtpInbox]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd).

    With `password`, AUTH is required; with `tls`, STARTTLS is required before MAIL.
    """
    inbox = SmtpInbox(password=password, on_message=on_message)
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        if tls is not None:
            return SMTP(inbox, tls_context=tls, require_starttls=True)
        if password is None:
            return SMTP(inbox)
        return SMTP(
            inbox,
            authenticator=inbox.authenticate,
            auth_required=True,
            auth_require_tls=False,  # a test on loopback; production uses TLS or STARTTLS
        )

    server = await loop.create_server(protocol, "127.0.0.1", 0)
    inbox.port = server.sockets[0].getsockname()[1]
    try:
        yield inbox
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Received:
    """One request the receiver got."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class WebhookReceiver:
    """What the local HTTP receiver got, and what it will answer."""

    port: int = 0
    answers: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Its webhook URL."""
        return f"http://127.0.0.1:{self.port}/hooks/chat"

    @property
    def accepted(self) -> list[Received]:
        """The requests it answered with a 2xx."""
        return [r for r in self.requests if 200 <= r.status < 300]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request per connection, answer it, close."""
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in head[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = self.answers.pop(0) if self.answers else 200
            self.requests.append(Received(status, headers, json.loads(body or b"{}")))
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        finally:
            writer.close()


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    """A real HTTP server on 127.0.0.1, for the test's lifetime."""
    receiver = WebhookReceiver()
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound once, then released)."""
    with closing(socket(AF_INET, SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def self_signed(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 and the certificate file a client trusts it with."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp.crt", directory / "smtp.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file
