"""The signing keys of RS256/ES256 tokens, fetched from a JWKS URL without ever making a
token wait on someone else's fetch.

- A key whose ``kid`` is in the cached set is answered at once (no I/O).
- An unknown ``kid`` refetches the set at most once per ``cooldown_s`` (key rotation needs
  no restart; tokens with made-up kids cannot turn the worker into a load generator
  against the identity provider).
- Fetches are single-flight: every token that needs one waits on the same request.
- A failed fetch is remembered for ``cooldown_s``: tokens that need the JWKS fail at once
  meanwhile, and keys already cached keep working.
- The fetch is asynchronous (aiohttp): it holds no thread, so an HS256 token, or one whose
  key is cached, is never queued behind it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt

from .errors import InvalidTokenError

MAX_JWKS_BYTES = 256 * 1024
Fetch = Callable[[str, float], Awaitable[Any]]


async def http_fetch(url: str, timeout_s: float) -> Any:
    """GET the JWKS document (JSON), bounded in time and size."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
        resp.raise_for_status()
        body = await resp.content.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        import json

        return json.loads(body)


class JwksKeys:
    def __init__(
        self,
        url: str,
        *,
        cache_s: float = 300.0,
        cooldown_s: float = 30.0,
        timeout_s: float = 5.0,
        fetch: Fetch = http_fetch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.cache_s = cache_s
        self.cooldown_s = cooldown_s
        self.timeout_s = timeout_s
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")  # last successful fetch
        self._attempted_at = float("-inf")  # last fetch, successful or not
        self._failed = False
        self._inflight: asyncio.Task[None] | None = None
        self.fetches = 0

    def cached(self, kid: str) -> jwt.PyJWK | None:
        """The key for ``kid`` from a set younger than ``cache_s`` (a revoked key goes away
        with its set), else None; never does I/O."""
        if self._clock() - self._fetched_at > self.cache_s:
            return None
        return self._keys.get(kid)

    async def get(self, kid: str) -> jwt.PyJWK:
        """The key for ``kid``; raises ``InvalidTokenError`` when it is unknown or the
        JWKS cannot be fetched."""
        key = self.cached(kid)
        if key is not None:
            return key
        now = self._clock()
        if now - self._attempted_at < self.cooldown_s and self._inflight is None:
            # fetched (or failed) a moment ago: answer from what that fetch gave
            if self._failed and kid not in self._keys:
                raise InvalidTokenError("signing keys unavailable")
            if kid in self._keys:  # a stale set that could not be refreshed still serves
                return self._keys[kid]
            raise InvalidTokenError("unknown signing key")
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._refresh())
        task = self._inflight
        await asyncio.shield(task)
        key = self._keys.get(kid)
        if key is None:
            if self._failed:
                raise InvalidTokenError("signing keys unavailable")
            raise InvalidTokenError("unknown signing key")
        return key  # when the refresh failed, a key of the previous set keeps working

    async def _refresh(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            document = await asyncio.wait_for(self._fetch(self.url, self.timeout_s), self.timeout_s)
            keys = {
                k.key_id: k
                for k in jwt.PyJWKSet.from_dict(document).keys
                if k.key_id and k.public_key_use in (None, "sig")
            }
        except Exception:  # unreachable, slow, not JSON, no usable key: all the same here
            self._failed = True
        else:
            self._keys, self._fetched_at, self._failed = keys, self._clock(), False
        finally:
            self._attempted_at = self._clock()
            self._inflight = None
