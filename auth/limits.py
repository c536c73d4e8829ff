"""Per-tenant limits: the policy (``TENANT_LIMITS``) and the limiter that enforces it.

``TENANT_LIMITS`` is a JSON object mapping a tenant id, or ``"*"`` for every other tenant, to
any of ``concurrent_sessions``, ``sessions_per_minute``, ``requests_per_minute`` and
``tts_chars_per_minute``, and to what the tenant's room participants may do:
``max_sessions_per_room``, ``participant_messages_per_minute`` and ``participant_config``
(the config keys participants may set, see :data:`PARTICIPANT_CONFIG_KEYS`). A tenant with no
entry and no ``"*"`` is not allowed (403). An empty policy allows every tenant without
limits; the participant rules then come from the worker's settings.

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
from typing import Any, Protocol

from prometheus_client import Counter

from .errors import LimiterUnavailableError, RateLimitedError, TenantNotAllowedError
from .tokens import valid_tenant_name

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


# what a room participant's config message may set: each top-level key, "instructions"
# (llm.instructions, the persona) and "text_room_audio" ({"audio": true} in a room the
# backend made text-only, which loads every audio model)
PARTICIPANT_CONFIG_KEYS = (
    "audio",
    "noise_filter",
    "tts",
    "stt",
    "turn",
    "instructions",
    "text_room_audio",
    "greeting",
    "recording",  # whether the participant's session is recorded (the policy must allow it)
)


@dataclass(frozen=True, slots=True)
class Limits:
    concurrent_sessions: int | None = None
    sessions_per_minute: int | None = None
    requests_per_minute: int | None = None
    tts_chars_per_minute: int | None = None
    # None: the worker's default (settings)
    max_sessions_per_room: int | None = None
    participant_messages_per_minute: int | None = None
    participant_config: tuple[str, ...] | None = None
    # not limits but the tenant's conversation policy, kept in the same table
    greeting: str | None = None  # said when a voice session starts
    memory: bool | None = None  # conversations remembered across sessions (opt-in)
    # the tenant's tools (JSON as written; parsed and checked by agent/tools/spec.py):
    # HTTP tools and MCP servers every session of the tenant gets, and the env: names
    # its dispatch metadata's tool headers may read
    tools: list[Any] | None = None
    mcp_servers: list[Any] | None = None
    tool_secrets: tuple[str, ...] | None = None
    # sessions may be recorded when asked: here (true) or by LiveKit egress ("egress")
    recording: bool | str | None = None
    # the tenant's default voice id (GET /v1/voices) and STT language (a code or "auto")
    voice: str | None = None
    language: str | None = None


MAX_GREETING_CHARS = 500


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
            if tenant != "*" and not valid_tenant_name(tenant):
                raise ValueError(
                    f"TENANT_LIMITS: tenant {tenant!r} must be 1-64 letters, digits or . _ -"
                )
            if not isinstance(limits, dict):
                raise ValueError(f"TENANT_LIMITS[{tenant!r}] must be an object")
            values: dict[str, object] = {}
            for name, value in limits.items():
                if name not in names:
                    raise ValueError(f"TENANT_LIMITS[{tenant!r}]: unknown limit {name!r}")
                if name == "participant_config":
                    values[name] = parse_participant_config(value, f"TENANT_LIMITS[{tenant!r}]")
                    continue
                if name == "greeting":
                    if not isinstance(value, str) or not 0 < len(value) <= MAX_GREETING_CHARS:
                        raise ValueError(
                            f"TENANT_LIMITS[{tenant!r}].greeting must be a string of 1-"
                            f"{MAX_GREETING_CHARS} characters"
                        )
                    values[name] = value
                    continue
                if name in ("tools", "mcp_servers"):
                    if not isinstance(value, list):
                        raise ValueError(f"TENANT_LIMITS[{tenant!r}].{name} must be a list")
                    values[name] = value
                    continue
                if name == "tool_secrets":
                    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                        raise ValueError(
                            f"TENANT_LIMITS[{tenant!r}].tool_secrets must be a list of "
                            "environment variable names"
                        )
                    values[name] = tuple(value)
                    continue
                if name in ("voice", "language"):
                    if not isinstance(value, str) or not 0 < len(value) <= 120:
                        raise ValueError(
                            f"TENANT_LIMITS[{tenant!r}].{name} must be a string of 1-120 characters"
                        )
                    values[name] = value
                    continue
                if name == "recording" and value == "egress":
                    values[name] = value
                    continue
                if name in ("memory", "recording"):
                    if not isinstance(value, bool):
                        raise ValueError(f"TENANT_LIMITS[{tenant!r}].{name} must be true or false")
                    values[name] = value
                    continue
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"TENANT_LIMITS[{tenant!r}].{name} must be an integer >= 0")
                values[name] = value
            table[tenant] = Limits(**values)  # type: ignore[arg-type]
        return cls(table)

    def known_tenants(self) -> list[str]:
        """The tenants named in the policy (for the room rule, auth/rooms.py)."""
        return [t for t in self.table if t != "*"]

    def limits_for(self, tenant: str) -> Limits:
        if not self.table:
            return Limits()
        found = self.table.get(tenant) or self.table.get("*")
        if found is None:
            raise TenantNotAllowedError(f"tenant {tenant!r} is not allowed on this worker")
        return found

    def entry(self, tenant: str) -> Limits | None:
        """The tenant's limits, or None for a tenant the policy refuses (the job-side
        readers: admission already refused such jobs, so the worker's defaults are safe)."""
        try:
            return self.limits_for(tenant)
        except TenantNotAllowedError:
            return None

    def label(self, tenant: str) -> str:
        """Metric label: named tenants by id, everyone else together (bounded cardinality)."""
        return tenant if tenant in self.table else "other"


def parse_participant_config(value: object, where: str) -> tuple[str, ...]:
    """A list of participant config keys (JSON list or comma-separated string)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError(f"{where}.participant_config must be a list of config keys")
    keys = tuple(i.strip() for i in items if i.strip())
    unknown = sorted(set(keys) - set(PARTICIPANT_CONFIG_KEYS))
    if unknown:
        raise ValueError(
            f"{where}.participant_config: unknown key {unknown[0]!r} "
            f"(choose from {', '.join(PARTICIPANT_CONFIG_KEYS)})"
        )
    return keys


class LimitBackend(Protocol):
    async def consume(
        self, tenant: str, name: str, amount: int, limit: int, window_start: float
    ) -> bool: ...

    async def acquire_session(
        self, tenant: str, session_id: str, limit: int, lease_s: float
    ) -> bool:
        """Take or renew a lease; expiry is judged by the store's own clock, so workers
        whose clocks disagree cannot expire each other's live leases."""
        ...

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
            ok = await self.backend.acquire_session(tenant, session_id, limit, SESSION_LEASE_S)
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
