"""Rooms belong to tenants (finding 1), leases by the store's clock (finding 11), and the
job's tenant from verified credentials only (finding 13)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.settings import Settings
from agent.worker.admission import ANONYMOUS, DispatchCredentials, SessionLease
from agent.worker.dispatch import DispatchMetadata, MetadataError
from auth.backends import RedisLimitBackend, SqliteLimitBackend
from auth.errors import InvalidRoomError, InvalidTokenError, RoomNotAllowedError
from auth.grants import DispatchGrants
from auth.limits import LimitBackend, Limiter, TenantPolicy
from auth.rooms import check_room, room_allowed
from tests.auth.tokens import AUDIENCE, HS_SECRET, hs256


def test_room_rule() -> None:
    assert room_allowed("acme", "acme-support-42")
    for room in ("globex-support-42", "acme", "acme-", "acmesupport", "xacme-1"):
        assert not room_allowed("acme", room), room
    # a longer tenant's prefix belongs to that tenant
    assert not room_allowed("acme", "acme-eu-1", known_tenants=["acme", "acme-eu"])
    assert room_allowed("acme-eu", "acme-eu-1", known_tenants=["acme", "acme-eu"])
    assert room_allowed("acme", "acme-support-1", known_tenants=["acme", "acme-eu"])
    # a rooms claim replaces the default: narrower or wider
    assert room_allowed("acme", "lobby", ["lobby", "acme-sales-*"])
    assert not room_allowed("acme", "acme-hr-1", ["lobby", "acme-sales-*"])
    for bad in ("acme-a\nb", "acme-\u202e1", "acme-../x", "acme-a b", "", "a" * 129, 5):
        with pytest.raises(InvalidRoomError):
            check_room("acme", bad)
    with pytest.raises(RoomNotAllowedError):
        check_room("acme", "globex-1")


def test_grants_are_bound_and_expire() -> None:
    now = [1_000_000.0]
    grants = DispatchGrants(b"k" * 32, ttl_s=300, clock=lambda: now[0])
    token, grant = grants.issue("acme", "acme-1", "agent")
    assert grants.verify(token, room="acme-1", agent="agent") == grant
    with pytest.raises(InvalidTokenError):
        DispatchGrants(b"other-key" * 4).verify(token, room="acme-1", agent="agent")
    # a backend's own HS256 token is no grant, even with the right fields
    with pytest.raises(InvalidTokenError):
        grants.verify(hs256(room="acme-1", agent="agent"), room="acme-1", agent="agent")
    now[0] += 310
    with pytest.raises(InvalidTokenError, match="expired"):
        grants.verify(token, room="acme-1", agent="agent")
    assert grants.verify(token, room="acme-1", agent="agent", check_time=False) == grant


def settings(tmp_path: Path, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "cache_path": tmp_path,
        "auth_jwt_secret": HS_SECRET,
        "auth_audience": AUDIENCE,
        "dispatch_grant_secret": "g" * 32,
        "agent_name": "agent",
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


async def test_credentials_of_a_job(tmp_path: Path) -> None:
    credentials = DispatchCredentials(settings(tmp_path))
    token = hs256(tenant="acme")
    assert await credentials.tenant_of(DispatchMetadata(token=token), "acme-1") == "acme"
    with pytest.raises(RoomNotAllowedError):
        await credentials.tenant_of(DispatchMetadata(token=token), "globex-1")
    grant, _ = credentials.grants.issue("globex", "globex-7", "agent")
    assert await credentials.tenant_of(DispatchMetadata(grant=grant), "globex-7") == "globex"
    with pytest.raises(InvalidTokenError):
        await credentials.tenant_of(DispatchMetadata(grant=grant), "globex-8")
    with pytest.raises(MetadataError):
        await credentials.tenant_of(DispatchMetadata(), "acme-1")
    # the job process re-reads an accepted token after it expired: signature only
    expired = hs256(tenant="acme", exp=int(time.time()) - 3600)
    meta = DispatchMetadata(token=expired)
    with pytest.raises(InvalidTokenError):
        await credentials.tenant_of(meta, "acme-1")
    assert await credentials.tenant_of(meta, "acme-1", check_time=False) == "acme"


async def test_with_auth_off_the_unverified_tenant_claim_is_ignored(tmp_path: Path) -> None:
    """Finding 13: the job took leases under whatever tenant an unsigned token claimed."""
    credentials = DispatchCredentials(settings(tmp_path, auth_jwt_secret=""))
    forged = hs256(tenant="globex")  # signed with a key this worker does not have
    tenant = await credentials.tenant_of(DispatchMetadata(token=forged), "any room")
    assert tenant == ANONYMOUS


@pytest.fixture(params=["sqlite", "redis"])
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[LimitBackend]]:
    if request.param == "sqlite":
        yield [SqliteLimitBackend(tmp_path / "limits.sqlite3") for _ in range(2)]
    else:
        url = request.getfixturevalue("redis_url")
        yield [RedisLimitBackend(url) for _ in range(2)]


async def test_clock_skew_cannot_expire_a_live_lease(backends: list[LimitBackend]) -> None:
    """Finding 11: worker B, its clock 120 s ahead, took worker A's live slot."""
    policy = TenantPolicy.parse('{"acme": {"concurrent_sessions": 1}}')
    a = Limiter(policy, backends[0], clock=time.time)
    b = Limiter(policy, backends[1], clock=lambda: time.time() + 120)
    await a.admit_session("acme", "job-a")
    with pytest.raises(Exception, match="concurrent_sessions"):
        await b.admit_session("acme", "job-b")
    await a.end_session("acme", "job-a")
    await b.admit_session("acme", "job-b")  # freed for real: taken
    for backend in backends:
        await backend.aclose()


async def test_a_job_that_loses_its_lease_is_told(tmp_path: Path) -> None:
    policy = TenantPolicy.parse('{"acme": {"concurrent_sessions": 1}}')
    store = SqliteLimitBackend(tmp_path / "limits.sqlite3")
    limiter = Limiter(policy, store)
    await limiter.admit_session("acme", "job-a")
    lost = asyncio.Event()

    async def on_lost() -> None:
        lost.set()

    lease = SessionLease(limiter, "acme", "job-a", on_lost=on_lost, interval_s=0.05)
    lease.start()
    await asyncio.sleep(0.2)
    assert not lost.is_set()  # renewals succeed while it holds the slot
    # the job stalled past its lease; another session took the tenant's only slot
    await store.release_session("acme", "job-a")
    await limiter.admit_session("acme", "job-b")
    await asyncio.wait_for(lost.wait(), 5)
    assert lease.lost
    await lease.release()  # does not free job-b's slot
    with pytest.raises(Exception, match="concurrent_sessions"):
        await limiter.admit_session("acme", "job-c")
