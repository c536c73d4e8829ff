"""Real keys and tokens for the auth tests, and a JWKS served on loopback."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

HS_SECRET = "test-hs256-secret-of-a-reasonable-length-0123456789"
AUDIENCE, ISSUER = "voice-agent", "https://auth.example.test"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "backend-1",
        "tenant": "acme",
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), HS_SECRET, algorithm="HS256")


@dataclass
class KeySet:
    rsa_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    ec_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def rs256(self, kid: str = "rsa-1", **overrides: Any) -> str:
        return jwt.encode(
            claims(**overrides), self.rsa_key, algorithm="RS256", headers={"kid": kid}
        )

    def es256(self, kid: str = "ec-1", **overrides: Any) -> str:
        return jwt.encode(claims(**overrides), self.ec_key, algorithm="ES256", headers={"kid": kid})

    def rsa_public_pem(self) -> bytes:
        return self.rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa_key.public_key()))
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec_key.public_key()))
        rsa_jwk.update(kid="rsa-1", alg="RS256", use="sig")
        ec_jwk.update(kid="ec-1", alg="ES256", use="sig")
        return {"keys": [rsa_jwk, ec_jwk]}


class JwksServer:
    """Serves ``/jwks.json`` on loopback and counts fetches."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys
        self.fetches = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _jwks(self, _: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response(self.keys.jwks())

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/jwks.json", self._jwks)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/jwks.json"

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
