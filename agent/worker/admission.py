"""Who may start a session, and how many: credentials, the room rule and tenant limits at
dispatch time.

In the worker's main process :meth:`Admission.on_request` sees every job LiveKit offers,
before any process is used: it parses the dispatch metadata, verifies the dispatch grant
(from ``/v1/dispatch``) or the backend's own token in it, checks that the room is the
tenant's (auth/rooms.py), and takes a session for the tenant (``sessions_per_minute`` and a
``concurrent_sessions`` lease). Any failure rejects the job, with the reason logged (never
the token).

The job process reads its tenant by verifying the same credentials again (signature only:
they were checked in time at admission), never from an unverified claim; with auth off
every job is ``anonymous``. It then holds the lease: :class:`SessionLease` renews it while
the job runs and gives it back when the job ends; a job that loses it (the slot was taken
after a long stall) is told, so it can end its sessions politely.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from livekit.agents import JobRequest

from agent.log import logger
from agent.obs.metrics import SESSIONS_REJECTED
from agent.settings import Settings
from agent.worker.dispatch import DispatchMetadata, MetadataError
from auth.backends import backend_from_settings
from auth.errors import AuthError, RateLimitedError
from auth.grants import DispatchGrants, grant_key
from auth.limits import SESSION_LEASE_S, Limiter, TenantPolicy
from auth.rooms import check_room, check_room_name
from auth.tokens import TokenConfig, TokenVerifier

ANONYMOUS = "anonymous"


def token_config(settings: Settings) -> TokenConfig:
    return TokenConfig(
        hs256_secret=settings.auth_jwt_secret,
        jwks_url=settings.auth_jwks_url,
        audience=settings.auth_audience,
        issuer=settings.auth_issuer,
        tenant_claim=settings.tenant_claim,
        leeway_s=settings.auth_leeway_s,
        max_lifetime_s=settings.auth_max_token_lifetime_s,
        jwks_refresh_cooldown_s=settings.auth_jwks_refresh_cooldown_s,
    )


def dispatch_grants(settings: Settings) -> DispatchGrants:
    key = grant_key(settings.dispatch_grant_secret, settings.livekit_api_secret)
    return DispatchGrants(key, ttl_s=settings.dispatch_grant_ttl_s)


def build_limiter(settings: Settings) -> Limiter:
    return Limiter(
        TenantPolicy.parse(settings.tenant_limits),
        backend_from_settings(settings.rate_limit_redis_url, settings.cache_path),
        fail_open=settings.rate_limit_fail_open,
    )


class DispatchCredentials:
    """Whose dispatch a job is: the grant or token in its metadata, verified, and the room
    rule applied."""

    def __init__(self, settings: Settings) -> None:
        self.verifier = TokenVerifier(token_config(settings))
        self.grants = dispatch_grants(settings)
        self.known_tenants = TenantPolicy.parse(settings.tenant_limits).known_tenants()
        self.agent_name = settings.agent_name

    @property
    def enabled(self) -> bool:
        return self.verifier.config.enabled

    async def tenant_of(self, meta: DispatchMetadata, room: str, *, check_time: bool = True) -> str:
        """The verified tenant of a job in ``room``; raises ``AuthError`` or
        ``MetadataError``. With auth off: ``anonymous``, whatever the metadata claims."""
        if not self.enabled:
            return ANONYMOUS
        check_room_name(room)
        if meta.grant:
            grant = self.grants.verify(
                meta.grant, room=room, agent=self.agent_name, check_time=check_time
            )
            return grant.tenant
        if meta.token:
            ident = await self.verifier.averify(meta.token, check_time=check_time)
            check_room(ident.tenant, room, ident.rooms, self.known_tenants)
            return ident.tenant
        raise MetadataError("dispatch metadata carries no grant or token", field="grant")


class Admission:
    """The request handler of the worker (main process)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._credentials = DispatchCredentials(settings)
        self._limiter: Limiter | None = None

    @property
    def limiter(self) -> Limiter:
        # created on first use, on the worker's event loop (the Redis client binds to it)
        if self._limiter is None:
            self._limiter = build_limiter(self._settings)
        return self._limiter

    async def on_request(self, req: JobRequest) -> None:
        job_id, room = req.job.id, req.room.name
        try:
            meta = DispatchMetadata.parse(req.job.metadata)
            tenant = await self._credentials.tenant_of(meta, room)
            meta.room_tools(self._settings, tenant)  # a bad tool declaration refuses the job
            await self.limiter.admit_session(tenant, job_id)
        except (MetadataError, AuthError) as e:
            code = getattr(e, "code", "bad_metadata")
            logger.warning(
                "dispatch rejected",
                extra={"job_id": job_id, "room": room[:128], "reason": code, "error": str(e)},
            )
            SESSIONS_REJECTED.labels(code).inc()
            await req.reject()
            return
        logger.info("dispatch admitted", extra={"job_id": job_id, "room": room, "tenant": tenant})
        await req.accept(attributes={"tenant": tenant})


class SessionLease:
    """The job's hold on its tenant's ``concurrent_sessions`` slot.

    ``on_lost`` is called once if a renewal finds the slot taken by another session (this
    job stalled past its lease and the tenant's limit was reached meanwhile); renewal then
    stops. An unreachable limit store is not a loss: the job goes on.
    """

    def __init__(
        self,
        limiter: Limiter,
        tenant: str,
        session_id: str,
        *,
        on_lost: Callable[[], Awaitable[None]] | None = None,
        interval_s: float = SESSION_LEASE_S / 3,
    ) -> None:
        self._limiter = limiter
        self.tenant = tenant
        self._session_id = session_id
        self._on_lost = on_lost
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.lost = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self._limiter.renew_session(self.tenant, self._session_id)
            except RateLimitedError:
                self.lost = True
                logger.warning(
                    "session lease lost: the tenant's slot was taken; ending the job",
                    extra={"tenant": self.tenant},
                )
                if self._on_lost is not None:
                    await self._on_lost()
                return
            except AuthError as e:  # the store is unreachable (fail closed): keep going
                logger.warning("session lease not renewed", extra={"error": str(e)})

    async def release(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.lost:  # the slot is another session's now
            await self._limiter.end_session(self.tenant, self._session_id)
        await self._limiter.backend.aclose()
