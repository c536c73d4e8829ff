"""JWT verification with pyjwt: HS256 with a shared secret, RS256/ES256 from a JWKS.

The algorithm is pinned per key source, never taken from the token alone: an HS256 token is
checked only against the shared secret, an RS256/ES256 token only against the JWKS key its
``kid`` names. ``alg: none`` and HS256 signed with a public key (the classic confusion) are
therefore refused. ``exp`` is required; ``exp``, ``nbf``, ``aud`` and ``iss`` are checked
with a small leeway; the tenant comes from a configurable claim.

The JWKS is fetched by pyjwt's ``PyJWKClient`` (cached; refetched when a token names a
``kid`` it has not seen, so key rotation needs no restart).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import jwt

from .errors import InvalidTokenError

HS_ALGORITHMS = ("HS256",)
JWKS_ALGORITHMS = ("RS256", "ES256")
MAX_TOKEN_CHARS = 8192


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """Attributes:
    hs256_secret: shared secret for HS256 tokens (empty: HS256 refused).
    jwks_url: URL of a JWKS for RS256/ES256 tokens (empty: those refused).
    audience / issuer: required ``aud`` / ``iss`` when set.
    tenant_claim: the claim naming the tenant.
    leeway_s: clock skew allowed on ``exp`` and ``nbf``.
    """

    hs256_secret: str = ""
    jwks_url: str = ""
    audience: str = ""
    issuer: str = ""
    tenant_claim: str = "tenant"
    leeway_s: float = 30.0
    jwks_cache_s: int = 300
    jwks_refresh_cooldown_s: float = 30.0

    @property
    def enabled(self) -> bool:
        return bool(self.hs256_secret or self.jwks_url)


@dataclass(frozen=True, slots=True)
class Identity:
    tenant: str
    subject: str | None
    claims: dict[str, Any]


class TokenVerifier:
    def __init__(self, config: TokenConfig, *, jwks_client: jwt.PyJWKClient | None = None) -> None:
        self.config = config
        self._jwks = jwks_client
        if self._jwks is None and config.jwks_url:
            # the key set is cached for jwks_cache_s (so a revoked key goes away with it);
            # an unknown kid refetches at most once per cooldown, so tokens with made-up kids
            # cannot turn the worker into a load generator against the identity provider
            self._jwks = jwt.PyJWKClient(
                config.jwks_url,
                cache_jwk_set=True,
                lifespan=config.jwks_cache_s,
                cooldown_duration=config.jwks_refresh_cooldown_s,
                timeout=5,
            )

    def verify(self, token: str) -> Identity:
        """Check ``token``; raises ``InvalidTokenError`` with a reason safe to show."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidTokenError("missing or oversized token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidTokenError("malformed token") from None
        alg = header.get("alg")
        key: Any
        if alg in HS_ALGORITHMS and self.config.hs256_secret:
            key, algorithms = self.config.hs256_secret, list(HS_ALGORITHMS)
        elif alg in JWKS_ALGORITHMS and self._jwks is not None:
            try:
                key = self._jwks.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientConnectionError:
                raise InvalidTokenError("signing keys unavailable") from None
            except jwt.PyJWTError:
                raise InvalidTokenError("unknown signing key") from None
            algorithms = [alg]
        else:
            raise InvalidTokenError(f"algorithm {alg!r} is not accepted")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.config.audience or None,
                issuer=self.config.issuer or None,
                leeway=self.config.leeway_s,
                options={
                    "require": ["exp"],
                    "verify_aud": bool(self.config.audience),
                },
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidTokenError("token not valid yet") from None
        except jwt.InvalidAudienceError:
            raise InvalidTokenError("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidTokenError("wrong issuer") from None
        except jwt.MissingRequiredClaimError as e:
            raise InvalidTokenError(f"missing claim {e.claim}") from None
        except jwt.PyJWTError:
            raise InvalidTokenError("invalid token") from None
        tenant = claims.get(self.config.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise InvalidTokenError(f"missing claim {self.config.tenant_claim}")
        subject = claims.get("sub")
        return Identity(
            tenant=tenant, subject=subject if isinstance(subject, str) else None, claims=claims
        )

    async def averify(self, token: str) -> Identity:
        """``verify`` off the event loop (a JWKS refetch is a blocking HTTP call)."""
        return await asyncio.to_thread(self.verify, token)
