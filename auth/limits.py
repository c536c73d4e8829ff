"""Per-tenant limits: the policy (``TENANT_LIMITS``) and the limiter that enforces it.

``TENANT_LIMITS`` is a JSON object mapping a tenant id, or ``"*"`` for every other tenant, to
any of ``concurrent_sessions``, ``sessions_per_minute``, ``requests_per_minute`` and
``tts_chars_per_minute``. A tenant with no entry and no ``"*"`` is not allowed (403). An empty
policy allows every tenant without limits.

Rates are fixed one-minute windows: exactly N requests per window get through. Concurrent
sessions are leases (renewed while the session runs), so a session whose process was killed
frees its slot when its lease runs out instead of holding it forever. The counting itself
lives in a backend shared by every process that enforces the limits (auth/backends.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol

from prometheus_client import Counter

from .errors import LimiterUnavailableError, RateLimitedError, TenantNotAllowedError

logger = logging.getLogger("auth.limits")
WINDOW_S = 60.0
SESSION_LEASE_S = 60.0

REJECTIONS = Counter(
    "rate_limit_rejections",
    "Requests and sessions refused by a tenant limit",
    ["tenant", "limit"],
)
LIMITER_UNAVAILABLE = Counter(
    "rate_limiter_unavailable",
    "Limit checks that could not reach the limit store",
    ["outcome"],
)


class BackendUnavailableError(Exception):
    """The shared limit store cannot be reached (raised by backends)."""


@dataclass(frozen=True, slots=True)
class Limits:
    concurrent_sessions: int | None = None
    sessions_per_minute: int | None = None
    requests_per_minute: int | None = None
    tts_chars_per_minute: int | None = None


class TenantPolicy:
    def __init__(self, table: dict[str, Limits]) -> None:
        self.table = table

    @classmethod
    def parse(cls, raw: str) -> TenantPolicy:
        """Parse ``TENANT_LIMITS``; raises ``ValueError`` naming what is wrong."""
        if not raw.strip():
            return cls({})
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"TENANT_LIMITS is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError("TENANT_LIMITS must be a JSON object of tenant -> limits")
        names = {f.name for f in fields(Limits)}
        table: dict[str, Limits] = {}
        for tenant, limits in data.items():
            if not isinstance(limits, dict):
                raise ValueError(f"TENANT_LIMITS[{tenant!r}] must be an object")
            for name, value in limits.items():
                if name not in names:
                    raise ValueError(f"TENANT_LIMITS[{tenant!r}]: unknown limit {name!r}")
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"TENANT_LIMITS[{tenant!r}].{name} must be an integer >= 0")
            table[tenant] = Limits(**limits)
        return cls(table)

    def limits_for(self, tenant: str) -> Limits:
        if not self.table:
            return Limits()
        found = self.table.get(tenant) or self.table.get("*")
        if found is None:
            raise TenantNotAllowedError(f"tenant {tenant!r} is not allowed on this worker")
        return found

    def label(self, tenant: str) -> str:
        """Metric label: named tenants by id, everyone else together (bounded cardinality)."""
        return tenant if tenant in self.table else "other"


class LimitBackend(Protocol):
    async def consume(
        self, tenant: str, name: str, amount: int, limit: int, window_start: float
    ) -> bool: ...

    async def acquire_session(
        self, tenant: str, session_id: str, limit: int, now: float, lease_s: float
    ) -> bool: ...

    async def release_session(self, tenant: str, session_id: str) -> None: ...

    async def aclose(self) -> None: ...


class Limiter:
    """Enforces a policy through a backend. ``fail_open`` decides what happens when the
    backend is unreachable: refuse (default, 503) or allow; either way it is logged and
    counted."""

    def __init__(
        self,
        policy: TenantPolicy,
        backend: LimitBackend,
        *,
        fail_open: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.backend = backend
        self.fail_open = fail_open
        self._clock = clock

    async def _consume(self, tenant: str, name: str, amount: int, limit: int | None) -> None:
        if limit is None:
            return
        now = self._clock()
        window_start = now - now % WINDOW_S
        try:
            allowed = amount <= limit and await self.backend.consume(
                tenant, name, amount, limit, window_start
            )
        except BackendUnavailableError as e:
            self._unavailable(e)
            return
        if not allowed:
            REJECTIONS.labels(self.policy.label(tenant), name).inc()
            retry_after = max(1.0, window_start + WINDOW_S - now)
            raise RateLimitedError(f"{name} limit of {limit} reached", retry_after=retry_after)

    def _unavailable(self, error: Exception) -> None:
        outcome = "allowed" if self.fail_open else "refused"
        LIMITER_UNAVAILABLE.labels(outcome).inc()
        logger.error("limit store unreachable", extra={"outcome": outcome, "error": str(error)})
        if not self.fail_open:
            raise LimiterUnavailableError("the rate limit store is unreachable") from None

    async def check_request(self, tenant: str) -> None:
        """One HTTP request; raises TenantNotAllowed / RateLimited / LimiterUnavailable."""
        limits = self.policy.limits_for(tenant)
        await self._consume(tenant, "requests_per_minute", 1, limits.requests_per_minute)

    async def check_tts_chars(self, tenant: str, chars: int) -> None:
        limits = self.policy.limits_for(tenant)
        await self._consume(tenant, "tts_chars_per_minute", chars, limits.tts_chars_per_minute)

    async def admit_session(self, tenant: str, session_id: str) -> None:
        """A new session (a dispatched job): the rate first, then a concurrency lease."""
        limits = self.policy.limits_for(tenant)
        await self._consume(tenant, "sessions_per_minute", 1, limits.sessions_per_minute)
        await self.renew_session(tenant, session_id)

    async def renew_session(self, tenant: str, session_id: str) -> None:
        """Take or extend the session's lease; the job calls it while it runs."""
        limit = self.policy.limits_for(tenant).concurrent_sessions
        if limit is None:
            return
        try:
            ok = await self.backend.acquire_session(
                tenant, session_id, limit, self._clock(), SESSION_LEASE_S
            )
        except BackendUnavailableError as e:
            self._unavailable(e)
            return
        if not ok:
            REJECTIONS.labels(self.policy.label(tenant), "concurrent_sessions").inc()
            raise RateLimitedError(f"concurrent_sessions limit of {limit} reached", retry_after=5.0)

    async def end_session(self, tenant: str, session_id: str) -> None:
        try:
            await self.backend.release_session(tenant, session_id)
        except BackendUnavailableError as e:
            # the lease runs out on its own
            logger.warning("could not release a session lease", extra={"error": str(e)})
