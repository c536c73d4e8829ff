"""JWT verification against real tokens: every way a token can be wrong."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import jwt
import pytest

from auth.errors import InvalidTokenError
from auth.tokens import TokenConfig, TokenVerifier
from tests.auth.tokens import AUDIENCE, HS_SECRET, ISSUER, JwksServer, KeySet, hs256


@pytest.fixture
async def jwks() -> AsyncIterator[JwksServer]:
    server = JwksServer(KeySet())
    await server.start()
    yield server
    await server.aclose()


@pytest.fixture
def verifier(jwks: JwksServer) -> TokenVerifier:
    return TokenVerifier(
        TokenConfig(
            hs256_secret=HS_SECRET, jwks_url=jwks.url, audience=AUDIENCE, issuer=ISSUER, leeway_s=5
        )
    )


def tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["tenant"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


async def test_valid_tokens(verifier: TokenVerifier, jwks: JwksServer) -> None:
    assert (await verifier.averify(hs256())).tenant == "acme"
    assert (await verifier.averify(jwks.keys.rs256())).tenant == "acme"
    ident = await verifier.averify(jwks.keys.es256(tenant="globex"))
    assert ident.tenant == "globex" and ident.subject == "backend-1"


async def test_every_bad_token_is_refused(verifier: TokenVerifier, jwks: JwksServer) -> None:
    now = int(time.time())
    other = KeySet()
    cases = {
        "expired": hs256(exp=now - 60),
        "not yet valid": hs256(nbf=now + 600),
        "no exp": hs256(exp=None),
        "wrong audience": hs256(aud="someone-else"),
        "wrong issuer": jwks.keys.rs256(iss="https://evil.test"),
        "wrong hs key": jwt.encode(
            {"tenant": "acme", "exp": now + 60, "aud": AUDIENCE, "iss": ISSUER},
            "not-the-secret-but-long-enough-1234567",
            algorithm="HS256",
        ),
        "wrong rsa key": other.rs256(),  # a kid we know, signed by another key
        "unknown kid": jwks.keys.rs256(kid="rotated-away"),
        "alg none": jwt.encode({"tenant": "acme", "exp": now + 60}, None, algorithm="none"),
        "hs256 with the rsa public key": _hs_with_public_key(jwks.keys),
        "tampered payload": tamper(hs256()),
        "tampered rs payload": tamper(jwks.keys.rs256()),
        "missing tenant": hs256(tenant=None),
        "empty tenant": hs256(tenant=""),
        "garbage": "not.a.token",
        "empty": "",
        "binary noise": "\x00\xff" * 10,
        "oversized": "a" * 10000,
    }
    for name, token in cases.items():
        with pytest.raises(InvalidTokenError):
            await verifier.averify(token)
        print(f"refused: {name}")


def _hs_with_public_key(keys: KeySet) -> str:
    """The algorithm-confusion attack: HS256 keyed with the RSA public key's PEM. pyjwt
    refuses to sign that, so the token is assembled by hand."""
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    body = b64(
        json.dumps({"tenant": "acme", "exp": now + 60, "aud": AUDIENCE, "iss": ISSUER}).encode()
    )
    sig = hmac.new(keys.rsa_public_pem(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


async def test_jwks_is_cached_and_refetched_for_a_new_kid(jwks: JwksServer) -> None:
    config = TokenConfig(jwks_url=jwks.url, audience=AUDIENCE, issuer=ISSUER)
    verifier = TokenVerifier(replace(config, jwks_refresh_cooldown_s=0))
    for _ in range(5):
        await verifier.averify(jwks.keys.rs256())
    assert jwks.fetches == 1
    with pytest.raises(InvalidTokenError):
        await verifier.averify(jwks.keys.rs256(kid="new-key"))
    assert jwks.fetches == 2  # an unknown kid triggers one refetch

    # with the default cooldown, a stream of made-up kids costs at most one refetch
    guarded = TokenVerifier(config)
    await guarded.averify(jwks.keys.rs256())
    before = jwks.fetches
    for i in range(20):
        with pytest.raises(InvalidTokenError):
            await guarded.averify(jwks.keys.rs256(kid=f"made-up-{i}"))
    assert jwks.fetches - before <= 1


async def test_hs_only_verifier_refuses_rs_tokens(jwks: JwksServer) -> None:
    verifier = TokenVerifier(TokenConfig(hs256_secret=HS_SECRET, audience=AUDIENCE))
    with pytest.raises(InvalidTokenError, match="not accepted"):
        await verifier.averify(jwks.keys.rs256())


def test_leeway_accepts_small_clock_skew() -> None:
    verifier = TokenVerifier(TokenConfig(hs256_secret=HS_SECRET, audience=AUDIENCE, leeway_s=30))
    assert verifier.verify(hs256(exp=int(time.time()) - 10)).tenant == "acme"
