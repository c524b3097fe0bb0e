"""JWT test support: signing keys, forged tokens, and a real local JWKS server (uvicorn)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping

ISSUER = "https://idp.test"
AUDIENCE = "hisho"


@dataclass(frozen=True)
class SigningKey:
    """A private key of the test identity provider, with its `kid` and algorithm."""

    kid: str
    algorithm: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @classmethod
    def rsa(cls) -> SigningKey:
        """A new RS256 key."""
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(f"rsa-{uuid4().hex[:8]}", "RS256", private)

    @classmethod
    def ec(cls) -> SigningKey:
        """A new ES256 (P-256) key."""
        return cls(f"ec-{uuid4().hex[:8]}", "ES256", ec.generate_private_key(ec.SECP256R1()))

    def jwk(self, **extra: object) -> dict[str, Any]:
        """The public JWK the provider publishes."""
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            data = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = ECAlgorithm.to_jwk(public, as_dict=True)
        return {**data, "kid": self.kid, "use": "sig", **extra}

    def public_pem(self) -> bytes:
        """The public key as PEM (what an attacker can download too)."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any] | None = None, **headers: Any) -> str:
        """A token signed with this key: `claims` as given, or `valid_claims()`."""
        return jwt.encode(
            valid_claims() if claims is None else claims,
            self.private,
            algorithm=self.algorithm,
            headers={"kid": self.kid, **headers},
        )


def valid_claims(**overrides: object) -> dict[str, Any]:
    """Claims the test verifier accepts: issuer, audience, sub, an hour's exp, scopes."""
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": f"user-{uuid4().hex[:8]}",
        "iat": now,
        "exp": now + 3600,
        "jti": str(uuid4()),
        "scope": "state:read commands:write",
        **overrides,
    }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], hmac_secret: bytes | None) -> str:
    """A token put together by hand (PyJWT refuses to make these): `alg: none`, or HS256
    keyed with bytes PyJWT would never take as an HMAC secret (a public key)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if hmac_secret is None:
        return f"{signing_input}."
    mac = hmac.new(hmac_secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def confusion_tokens(key: SigningKey) -> dict[str, str]:
    """The algorithm-confusion forgeries against `key`: none, HS256 with its PEM / JWK."""
    claims = valid_claims()
    jwk_bytes = json.dumps(key.jwk()).encode()
    return {
        "alg none": forged({"alg": "none", "typ": "JWT", "kid": key.kid}, claims, None),
        "alg None": forged({"alg": "None", "kid": key.kid}, claims, None),
        "HS256 with the public PEM": forged(
            {"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims, key.public_pem()
        ),
        "HS256 with the public JWK": forged({"alg": "HS256", "kid": key.kid}, claims, jwk_bytes),
    }


@dataclass
class JwksServer:
    """A JWKS endpoint on 127.0.0.1 (random port) whose keys a test changes at will."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    fetches: int = 0
    status: int = 200
    url: str = ""

    def publish(self, *keys: SigningKey) -> None:
        """Serve exactly these keys from now on (a rotation drops the others)."""
        self.keys = [key.jwk() for key in keys]

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        _receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        self.fetches += 1
        body = json.dumps({"keys": self.keys}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def jwks_server(*keys: SigningKey) -> AsyncIterator[JwksServer]:
    """Run a `JwksServer` publishing `keys` under uvicorn, in this event loop."""
    app = JwksServer()
    app.publish(*keys)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        app.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
        yield app
    finally:
        server.should_exit = True
        await task
