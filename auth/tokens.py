"""JWT verification with pyjwt: HS256 with a shared secret, RS256/ES256 from a JWKS.

The algorithm is pinned per key source, never taken from the token alone: an HS256 token is
checked only against the shared secret, an RS256/ES256 token only against the JWKS key its
``kid`` names, and only when that key is of the token's algorithm. ``alg: none`` and HS256
signed with a public key (the classic confusion) are therefore refused.

Rules on top of the signature (each a 401, never a 500):

- ``exp`` is required; ``exp``, ``nbf`` and ``iat`` must be numbers (a string ``exp`` is
  refused); ``exp``/``nbf`` are checked with a small leeway.
- A token may live at most ``max_lifetime_s`` (default 24 h): ``exp - iat`` and
  ``exp - now`` are both bounded, so a token "valid until 9999" is refused.
- ``aud`` and ``iss`` when configured.
- The tenant claim is 1-64 characters of letters, digits and ``._-`` (no ``*``, spaces,
  control or zero-width characters).
- An optional ``rooms`` claim (auth/rooms.py) must be well formed.

The JWKS (auth/jwks.py) is fetched asynchronously and single-flight; HS256 tokens and tokens
whose key is cached never wait for it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

from .errors import InvalidTokenError
from .jwks import JwksKeys
from .rooms import parse_rooms_claim

HS_ALGORITHMS = ("HS256",)
JWKS_ALGORITHMS = ("RS256", "ES256")
MAX_TOKEN_CHARS = 8192
MIN_HS256_SECRET_BYTES = 32
TENANT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TIME_CLAIMS = ("exp", "nbf", "iat")


def valid_tenant_name(name: object) -> bool:
    return isinstance(name, str) and TENANT_NAME.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """Attributes:
    hs256_secret: shared secret for HS256 tokens (empty: HS256 refused).
    jwks_url: URL of a JWKS for RS256/ES256 tokens (empty: those refused).
    audience / issuer: required ``aud`` / ``iss`` when set.
    tenant_claim: the claim naming the tenant.
    leeway_s: clock skew allowed on ``exp`` and ``nbf``.
    max_lifetime_s: the longest a token may live (``exp - iat``, ``exp - now``).
    """

    hs256_secret: str = ""
    jwks_url: str = ""
    audience: str = ""
    issuer: str = ""
    tenant_claim: str = "tenant"
    leeway_s: float = 30.0
    max_lifetime_s: float = 86400.0
    jwks_cache_s: float = 300.0
    jwks_refresh_cooldown_s: float = 30.0

    @property
    def enabled(self) -> bool:
        return bool(self.hs256_secret or self.jwks_url)


@dataclass(frozen=True, slots=True)
class Identity:
    """Attributes:
    tenant: the verified tenant name.
    subject: ``sub`` when it is a string.
    rooms: the ``rooms`` claim's patterns, None when the token has none.
    claims: every claim of the token.
    """

    tenant: str
    subject: str | None
    claims: dict[str, Any] = field(repr=False)
    rooms: tuple[str, ...] | None = None


class TokenVerifier:
    def __init__(
        self,
        config: TokenConfig,
        *,
        jwks: JwksKeys | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._clock = clock
        self._jwks = jwks
        if self._jwks is None and config.jwks_url:
            self._jwks = JwksKeys(
                config.jwks_url,
                cache_s=config.jwks_cache_s,
                cooldown_s=config.jwks_refresh_cooldown_s,
            )

    @staticmethod
    def _header(token: str) -> dict[str, Any]:
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidTokenError("missing or oversized token")
        try:
            header = jwt.get_unverified_header(token)
        except Exception:  # PyJWTError, and RecursionError on a deeply nested header
            raise InvalidTokenError("malformed token") from None
        return header

    def verify(self, token: str, *, check_time: bool = True) -> Identity:
        """Check ``token`` without I/O: HS256, or RS256/ES256 whose key is cached. Raises
        ``InvalidTokenError`` with a reason safe to show."""
        header = self._header(token)
        alg = header.get("alg")
        if alg in JWKS_ALGORITHMS and self._jwks is not None:
            kid = header.get("kid")
            jwk = self._jwks.cached(kid) if isinstance(kid, str) else None
            if jwk is None:
                raise InvalidTokenError("unknown signing key")
            return self._decode(token, alg, self._jwk_key(jwk, alg), check_time)
        return self._decode(token, alg, self._hs_key(alg), check_time)

    async def averify(self, token: str, *, check_time: bool = True) -> Identity:
        """``verify``, fetching the JWKS when the token names a key not cached yet.

        ``check_time=False`` skips ``exp``/``nbf``/lifetime: for a job process re-reading
        the tenant of a token that admission already checked when the job was offered.
        """
        header = self._header(token)
        alg = header.get("alg")
        if alg in JWKS_ALGORITHMS and self._jwks is not None:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid or len(kid) > 256:
                raise InvalidTokenError("token names no signing key")
            jwk = await self._jwks.get(kid)
            return self._decode(token, alg, self._jwk_key(jwk, alg), check_time)
        return self._decode(token, alg, self._hs_key(alg), check_time)

    def _hs_key(self, alg: object) -> str:
        if alg in HS_ALGORITHMS and self.config.hs256_secret:
            return self.config.hs256_secret
        raise InvalidTokenError(f"algorithm {str(alg)[:16]!r} is not accepted")

    @staticmethod
    def _jwk_key(jwk: jwt.PyJWK, alg: str) -> Any:
        # the key named by kid decides the algorithm: an ES256 header on an RSA key is a
        # forgery attempt (or a broken issuer), not a reason to crash
        if jwk.algorithm_name != alg:
            raise InvalidTokenError("token algorithm does not match its signing key")
        return jwk.key

    def _decode(self, token: str, alg: Any, key: Any, check_time: bool) -> Identity:
        cfg = self.config
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=cfg.audience or None,
                issuer=cfg.issuer or None,
                leeway=cfg.leeway_s,
                options={
                    "require": ["exp"],
                    "verify_aud": bool(cfg.audience),
                    "verify_exp": check_time,
                    "verify_nbf": check_time,
                    "verify_iat": False,  # checked below, as a number only
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
        except Exception:  # PyJWTError; TypeError/ValueError/RecursionError on odd input
            raise InvalidTokenError("invalid token") from None
        if not isinstance(claims, dict):
            raise InvalidTokenError("invalid token")
        for name in _TIME_CLAIMS:
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise InvalidTokenError(f"claim {name} must be a number")
        if check_time:
            exp = float(claims["exp"])
            longest = cfg.max_lifetime_s + cfg.leeway_s
            iat = claims.get("iat")
            if exp - self._clock() > longest or (iat is not None and exp - float(iat) > longest):
                raise InvalidTokenError(
                    f"token lifetime is longer than the maximum of {cfg.max_lifetime_s:.0f} s"
                )
        tenant = claims.get(cfg.tenant_claim)
        if tenant is None:
            raise InvalidTokenError(f"missing claim {cfg.tenant_claim}")
        if not valid_tenant_name(tenant):
            raise InvalidTokenError(
                f"claim {cfg.tenant_claim} must be 1-64 letters, digits or . _ -"
            )
        subject = claims.get("sub")
        return Identity(
            tenant=tenant,
            subject=subject if isinstance(subject, str) else None,
            claims=claims,
            rooms=parse_rooms_claim(claims.get("rooms")),
        )
