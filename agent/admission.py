"""Who may start a session, and how many: token and tenant limits at dispatch time.

In the worker's main process :meth:`Admission.on_request` sees every job LiveKit offers,
before any process is used: it parses the dispatch metadata, verifies the backend's token in
it, and takes a session for the token's tenant (``sessions_per_minute`` and a
``concurrent_sessions`` lease). Any failure rejects the job, with the reason logged (never
the token).

The job process then holds the lease: :class:`SessionLease` renews it while the job runs and
gives it back when the job ends, so the slot frees when a session ends, and within a lease
period when a job process dies without saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import jwt
from livekit.agents import JobRequest

from auth.backends import backend_from_settings
from auth.errors import AuthError
from auth.limits import SESSION_LEASE_S, Limiter, TenantPolicy
from auth.tokens import TokenConfig, TokenVerifier

from .dispatch import DispatchMetadata, MetadataError
from .log import logger
from .metrics import SESSIONS_REJECTED
from .settings import Settings

ANONYMOUS = "anonymous"


def token_config(settings: Settings) -> TokenConfig:
    return TokenConfig(
        hs256_secret=settings.auth_jwt_secret,
        jwks_url=settings.auth_jwks_url,
        audience=settings.auth_audience,
        issuer=settings.auth_issuer,
        tenant_claim=settings.tenant_claim,
        leeway_s=settings.auth_leeway_s,
        jwks_refresh_cooldown_s=settings.auth_jwks_refresh_cooldown_s,
    )


def build_limiter(settings: Settings) -> Limiter:
    return Limiter(
        TenantPolicy.parse(settings.tenant_limits),
        backend_from_settings(settings.rate_limit_redis_url, settings.cache_path),
        fail_open=settings.rate_limit_fail_open,
    )


def job_tenant(meta: DispatchMetadata, tenant_claim: str) -> str:
    """The tenant of an admitted job. The token was verified by the main process before the
    job was accepted, so the job process only reads the claim."""
    if not meta.token:
        return ANONYMOUS
    try:
        claims: dict[str, Any] = jwt.decode(meta.token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ANONYMOUS
    tenant = claims.get(tenant_claim)
    return tenant if isinstance(tenant, str) and tenant else ANONYMOUS


class Admission:
    """The request handler of the worker (main process)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._verifier = TokenVerifier(token_config(settings))
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
            tenant = ANONYMOUS
            if self._verifier.config.enabled:
                if not meta.token:
                    raise MetadataError("dispatch metadata carries no token", field="token")
                tenant = (await self._verifier.averify(meta.token)).tenant
            await self.limiter.admit_session(tenant, job_id)
        except (MetadataError, AuthError) as e:
            code = getattr(e, "code", "bad_metadata")
            logger.warning(
                "dispatch rejected",
                extra={"job_id": job_id, "room": room, "reason": code, "error": str(e)},
            )
            SESSIONS_REJECTED.labels(code).inc()
            await req.reject()
            return
        logger.info("dispatch admitted", extra={"job_id": job_id, "room": room, "tenant": tenant})
        await req.accept(attributes={"tenant": tenant})


class SessionLease:
    """The job's hold on its tenant's ``concurrent_sessions`` slot."""

    def __init__(self, limiter: Limiter, tenant: str, session_id: str) -> None:
        self._limiter = limiter
        self.tenant = tenant
        self._session_id = session_id
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(SESSION_LEASE_S / 3)
            try:
                await self._limiter.renew_session(self.tenant, self._session_id)
            except AuthError as e:  # the slot was taken over after a long stall: keep going
                logger.warning("session lease not renewed", extra={"error": str(e)})

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._limiter.end_session(self.tenant, self._session_id)
        await self._limiter.backend.aclose()
