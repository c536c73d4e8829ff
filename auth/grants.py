"""Dispatch grants: what ``/v1/dispatch`` puts in the job metadata instead of the caller's
bearer token.

Anyone who can read a room's job metadata (LiveKit's API, its logs, every agent process)
could replay a bearer token copied there. A grant is useless elsewhere: it is signed by the
worker's own key (``DISPATCH_GRANT_SECRET``, or a key derived from ``LIVEKIT_API_SECRET``
when that is empty), names one tenant, one room and one agent, carries an id for the logs,
and expires after ``ttl_s`` (five minutes by default: LiveKit offers a dispatched job within
seconds).

The worker's admission verifies it: signature, expiry, and that the job's room and agent
are the ones it names.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from .errors import InvalidTokenError
from .tokens import valid_tenant_name

GRANT_TYPE = "voice-agent/dispatch-grant"
DERIVATION_LABEL = b"voice-agent dispatch grant v1"


def grant_key(grant_secret: str, livekit_api_secret: str) -> bytes:
    """The signing key: the explicit secret, else one derived from LiveKit's API secret
    (every worker of a deployment has it; the derivation keeps the two keys apart). Empty
    when neither is set: grants can then be neither issued nor accepted."""
    if grant_secret:
        return grant_secret.encode()
    if livekit_api_secret:
        return hmac.new(livekit_api_secret.encode(), DERIVATION_LABEL, hashlib.sha256).digest()
    return b""


@dataclass(frozen=True, slots=True)
class Grant:
    tenant: str
    room: str
    agent: str
    grant_id: str


class DispatchGrants:
    def __init__(
        self, key: bytes, *, ttl_s: float = 300.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = key
        self.ttl_s = ttl_s
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self._key)

    def issue(self, tenant: str, room: str, agent: str) -> tuple[str, Grant]:
        """A signed grant for ``tenant`` to run ``agent`` in ``room``."""
        if not self._key:
            raise RuntimeError("no dispatch grant key (DISPATCH_GRANT_SECRET/LIVEKIT_API_SECRET)")
        now = int(self._clock())
        grant = Grant(tenant=tenant, room=room, agent=agent, grant_id=uuid.uuid4().hex)
        claims = {
            "typ": GRANT_TYPE,
            "tenant": tenant,
            "room": room,
            "agent": agent,
            "jti": grant.grant_id,
            "iat": now,
            "exp": now + int(self.ttl_s),
        }
        return jwt.encode(claims, self._key, algorithm="HS256"), grant

    def verify(self, token: str, *, room: str, agent: str, check_time: bool = True) -> Grant:
        """The grant in ``token`` if it is ours, unexpired, and for this room and agent;
        raises ``InvalidTokenError``. ``check_time=False``: the job process re-reading a
        grant that admission already accepted."""
        if not self._key:
            raise InvalidTokenError("dispatch grants are not accepted (no grant key)")
        if not token or len(token) > 4096:
            raise InvalidTokenError("malformed grant")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                options={"require": ["exp", "jti"], "verify_exp": False},
            )
        except Exception:
            raise InvalidTokenError("invalid grant") from None
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise InvalidTokenError("invalid grant")
        if check_time and exp < self._clock() - 5:  # by this worker's clock, 5 s of skew
            raise InvalidTokenError("grant expired")
        if claims.get("typ") != GRANT_TYPE or not valid_tenant_name(claims.get("tenant")):
            raise InvalidTokenError("invalid grant")
        if claims.get("room") != room or claims.get("agent") != agent:
            raise InvalidTokenError("grant is for another room or agent")
        return Grant(tenant=claims["tenant"], room=room, agent=agent, grant_id=str(claims["jti"]))
