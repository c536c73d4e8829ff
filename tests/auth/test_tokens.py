"""JWT verification against real tokens: every way a token can be wrong."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import jwt
import pytest

from auth.errors import InvalidTokenError
from auth.jwks import JwksKeys
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


# --- finding 6: a slow or dead JWKS never delays other tokens --------------------------


class HeldJwks:
    """A JWKS endpoint that answers only when the test lets it (a slow identity provider),
    counting fetches."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys
        self.release = asyncio.Event()
        self.fetches = 0
        self.fail = False

    async def __call__(self, url: str, timeout_s: float) -> object:
        self.fetches += 1
        await self.release.wait()
        if self.fail:
            raise ConnectionError("identity provider down")
        return self.keys.jwks()


async def test_jwks_fetches_are_single_flight_and_never_block_hs256() -> None:
    keys = KeySet()
    endpoint = HeldJwks(keys)
    jwks = JwksKeys("http://idp.invalid/jwks", cooldown_s=30, fetch=endpoint)
    verifier = TokenVerifier(TokenConfig(hs256_secret=HS_SECRET, audience=AUDIENCE), jwks=jwks)
    made_up = [keys.rs256(kid=f"made-up-{i}") for i in range(20)]
    pending = [asyncio.create_task(verifier.averify(t)) for t in made_up]
    await asyncio.sleep(0.05)
    # the identity provider hangs; an HS256 token is answered meanwhile
    assert (await asyncio.wait_for(verifier.averify(hs256()), 1)).tenant == "acme"
    assert not any(t.done() for t in pending) and endpoint.fetches == 1  # one fetch for all
    endpoint.release.set()
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(r, InvalidTokenError) for r in results)
    # within the cooldown, made-up kids are answered from the last fetch, without a new one
    with pytest.raises(InvalidTokenError, match="unknown signing key"):
        await asyncio.wait_for(verifier.averify(keys.rs256(kid="made-up-again")), 1)
    assert (await verifier.averify(keys.rs256())).tenant == "acme"  # a known key: cached
    assert endpoint.fetches == 1


async def test_a_failed_jwks_fetch_is_remembered_for_the_cooldown() -> None:
    keys = KeySet()
    endpoint = HeldJwks(keys)
    endpoint.fail = True
    endpoint.release.set()
    jwks = JwksKeys("http://idp.invalid/jwks", cooldown_s=30, fetch=endpoint)
    verifier = TokenVerifier(TokenConfig(hs256_secret=HS_SECRET, audience=AUDIENCE), jwks=jwks)
    for _ in range(5):
        with pytest.raises(InvalidTokenError, match="signing keys unavailable"):
            await verifier.averify(keys.rs256())
    assert endpoint.fetches == 1


# --- finding 9: an alg that does not match the kid's key is a 401, not a crash ---------


async def test_algorithm_not_matching_the_named_key(jwks: JwksServer) -> None:
    verifier = TokenVerifier(TokenConfig(jwks_url=jwks.url, audience=AUDIENCE))
    # signed with the EC key but naming the RSA key's kid, and the reverse
    forged = [jwks.keys.es256(kid="rsa-1"), jwks.keys.rs256(kid="ec-1")]
    for token in forged:
        with pytest.raises(InvalidTokenError, match="does not match"):
            await verifier.averify(token)


# --- finding 10: token rules ------------------------------------------------------------


async def test_token_rules() -> None:
    verifier = TokenVerifier(TokenConfig(hs256_secret=HS_SECRET, audience=AUDIENCE))
    now = int(time.time())
    refused = {
        "exp in 9999": hs256(exp=253402300799),
        "lives 25 h": hs256(iat=now, exp=now + 25 * 3600),
        "string exp": hs256(exp=str(now + 60)),
        "string iat": hs256(iat=str(now)),
        "bool nbf": hs256(nbf=True),
        "blank tenant": hs256(tenant=" "),
        "NUL tenant": hs256(tenant="\x00"),
        "zero-width tenant": hs256(tenant="acme\u200b"),
        "wildcard tenant": hs256(tenant="*"),
        "long tenant": hs256(tenant="a" * 65),
        "number tenant": hs256(tenant=5),
        "rooms not a list": hs256(rooms="acme-*"),
        "room pattern with a newline": hs256(rooms=["acme-\n"]),
    }
    for name, token in refused.items():
        with pytest.raises(InvalidTokenError):
            await verifier.averify(token)
            pytest.fail(name)
    assert (await verifier.averify(hs256(tenant="acme.eu_1-x"))).tenant == "acme.eu_1-x"
    assert (await verifier.averify(hs256(rooms=["acme-*"]))).rooms == ("acme-*",)


def test_short_hs256_secrets_and_bad_tenant_names_are_configuration_errors() -> None:
    from agent.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="AUTH_JWT_SECRET"):
        Settings.from_env({"AUTH_JWT_SECRET": "abc"})
    with pytest.raises(SettingsError, match="tenant"):
        Settings.from_env({"TENANT_LIMITS": '{"acme\\u200b": {}}'})
    assert Settings.from_env({"AUTH_JWT_SECRET": "x" * 32}).auth_jwt_secret
