"""The HTTP API in-process: statuses, bodies, limits, the spec, speak and dispatch."""

from __future__ import annotations

import asyncio
import io
import json
import wave
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from agent.http.api import MAX_BODY_BYTES, ROUTES, build_app, openapi_document
from agent.http.runtime import build_context
from agent.settings import Settings
from agent.worker.admission import dispatch_grants
from auth.errors import InvalidTokenError
from tests.auth.tokens import AUDIENCE, HS_SECRET, ISSUER, hs256
from tests.fake_livekit import FakeLiveKit

REPO = Path(__file__).resolve().parents[2]
LIMITS = {"acme": {"requests_per_minute": 5, "tts_chars_per_minute": 60}, "globex": {}}


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    base = Settings(
        cache_path=tmp_path,
        auth_jwt_secret=HS_SECRET,
        auth_audience=AUDIENCE,
        auth_issuer=ISSUER,
        tenant_limits=json.dumps(LIMITS),
    )
    return replace(base, **overrides)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_app(build_context(settings(tmp_path))))) as c:
        yield c


def with_livekit(tmp_path: Path, fake: FakeLiveKit) -> Settings:
    """Settings whose LiveKit API (dispatch) is ``fake``."""
    return settings(
        tmp_path,
        livekit_url=fake.url.replace("ws://", "http://"),
        livekit_api_key="devkey",
        livekit_api_secret="x" * 40,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_open_routes(client: TestClient) -> None:
    index = await (await client.get("/")).json()
    assert index["name"] == "local-voice-agent" and index["version"]
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    metrics = await client.get("/metrics")
    assert metrics.status == 200 and "rate_limit_rejections" in await metrics.text()


async def test_statuses_for_bad_credentials(client: TestClient) -> None:
    cases = [
        ({}, 401),
        ({"Authorization": "Basic abc"}, 401),
        (bearer("garbage"), 401),
        (bearer(hs256(exp=1)), 401),
        (bearer(hs256(aud="other")), 401),
        (bearer(hs256(tenant="initech")), 403),  # valid token, tenant not configured
        (bearer(hs256(tenant="globex")), 200),
    ]
    for headers, status in cases:
        resp = await client.get("/v1/whoami", headers=headers)
        assert resp.status == status, (headers, status)
        body = await resp.json()
        if status != 200:
            assert set(body["error"]) == {"code", "message"}
            assert "Bearer" not in json.dumps(body)  # nothing of the token comes back


async def test_bad_bodies(client: TestClient) -> None:
    token = bearer(hs256(tenant="globex"))
    cases = [
        (b"{not json", 400),
        (b"[1]", 400),
        (json.dumps({"txt": "hello"}).encode(), 400),
        (json.dumps({"text": ""}).encode(), 400),
        (json.dumps({"text": 5}).encode(), 400),
        (json.dumps({"text": "x" * 3000}).encode(), 400),
        (json.dumps({"text": "hi", "tts": {"speed": "fast"}}).encode(), 400),
        (b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}", 413),
    ]
    for body, status in cases:
        resp = await client.post("/v1/speak", data=body, headers=token)
        assert resp.status == status, body[:40]
        assert (await resp.json())["error"]["code"]


async def test_requests_per_minute_is_exact_and_per_tenant(client: TestClient) -> None:
    acme, globex = bearer(hs256(tenant="acme")), bearer(hs256(tenant="globex"))
    statuses = [(await client.get("/v1/whoami", headers=acme)).status for _ in range(8)]
    assert statuses == [200] * 5 + [429] * 3
    limited = await client.get("/v1/whoami", headers=acme)
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert (await limited.json())["error"]["code"] == "rate_limited"
    for _ in range(10):  # globex has no limits and is not affected by acme's
        assert (await client.get("/v1/whoami", headers=globex)).status == 200


async def test_speak_returns_wav_and_counts_characters(tmp_path: Path) -> None:
    app = build_app(build_context(settings(tmp_path)))
    async with TestClient(TestServer(app)) as client:
        acme = bearer(hs256(tenant="acme"))
        resp = await client.post("/v1/speak", json={"text": "Welcome to the hotel."}, headers=acme)
        assert resp.status == 200 and resp.content_type == "audio/wav"
        with wave.open(io.BytesIO(await resp.read())) as w:
            # streamed: the header's sizes say "unknown", the frames run to the end
            assert w.getframerate() == 22050 and len(w.readframes(1 << 30)) > 2 * 22050 * 0.5
        # 21 + 21 characters fit in 60; the next 21 do not
        again = await client.post("/v1/speak", json={"text": "Welcome to the hotel."}, headers=acme)
        assert again.status == 200
        over = await client.post("/v1/speak", json={"text": "Welcome to the hotel."}, headers=acme)
        assert over.status == 429
    assert any((tmp_path / "clips").glob("??/*.clip"))  # it went through the clip cache


async def test_dispatch_sends_a_grant_for_the_tenants_own_room(tmp_path: Path) -> None:
    """Finding 1: a tenant dispatched into any room (another tenant's too) and its bearer
    token was copied into the job metadata."""
    fake = FakeLiveKit()
    await fake.start()
    try:
        s = with_livekit(tmp_path, fake)
        token = hs256(tenant="globex")
        async with TestClient(TestServer(build_app(build_context(s)))) as client:
            for room, status in [
                ("acme-support-1", 403),  # another tenant's room
                ("support-1", 403),  # nobody's prefix
                ("globex", 403),  # the bare tenant name is no room of it
                ("globex-support\n1", 400),
                ("globex-\u202eevil", 400),  # bidi control
                ("globex-../x", 400),
                ("globex-" + "a" * 130, 400),
            ]:
                resp = await client.post("/v1/dispatch", json={"room": room}, headers=bearer(token))
                assert resp.status == status, (room, await resp.text())
            assert fake.dispatches == []
            resp = await client.post(
                "/v1/dispatch",
                json={"room": "globex-support-1", "instructions": "Be brief."},
                headers=bearer(token),
            )
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["tenant"] == "globex"
        _, req = fake.dispatches[0]
        assert req.room == "globex-support-1" and req.agent_name == s.agent_name
        metadata = json.loads(req.metadata)
        assert set(metadata) == {"grant", "instructions"} and token not in req.metadata
        grant = dispatch_grants(s).verify(metadata["grant"], room=req.room, agent=s.agent_name)
        assert grant.tenant == "globex"
        # the grant is worth nothing for another room or agent
        for room, agent in (("globex-other", s.agent_name), (req.room, "other-agent")):
            with pytest.raises(InvalidTokenError):
                dispatch_grants(s).verify(metadata["grant"], room=room, agent=agent)
    finally:
        await fake.aclose()


async def test_rooms_claim_narrows_or_extends_the_tenants_rooms(tmp_path: Path) -> None:
    fake = FakeLiveKit()
    await fake.start()
    try:
        s = with_livekit(tmp_path, fake)
        narrow = bearer(hs256(tenant="globex", rooms=["globex-sales-*", "lobby"]))
        async with TestClient(TestServer(build_app(build_context(s)))) as client:
            for room, status in [("globex-sales-1", 200), ("lobby", 200), ("globex-hr-1", 403)]:
                resp = await client.post("/v1/dispatch", json={"room": room}, headers=narrow)
                assert resp.status == status, room
            bad_claim = bearer(hs256(tenant="globex", rooms="globex-*"))
            resp = await client.post("/v1/dispatch", json={"room": "globex-1"}, headers=bad_claim)
            assert resp.status == 401
    finally:
        await fake.aclose()


async def test_unreachable_redis_fails_closed_or_open_as_set(tmp_path: Path) -> None:
    dead = "redis://127.0.0.1:1/0"
    for fail_open, status in ((False, 503), (True, 200)):
        s = settings(tmp_path, rate_limit_redis_url=dead, rate_limit_fail_open=fail_open)
        async with TestClient(TestServer(build_app(build_context(s)))) as client:
            resp = await client.get("/v1/whoami", headers=bearer(hs256(tenant="acme")))
            assert resp.status == status


def test_openapi_file_matches_the_served_routes(tmp_path: Path) -> None:
    spec = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
    assert spec == json.loads(json.dumps(openapi_document())), (
        "regenerate: python -m agent openapi -o docs/openapi.yaml"
    )
    app = build_app(build_context(settings(tmp_path)))
    served = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert served == documented == {(r.method, r.path) for r in ROUTES}


async def test_no_500_for_hostile_headers(client: TestClient) -> None:
    for value in ["Bearer " + "a" * 9000, "Bearer a.b.c", "Bearer \u00e9\u00e9", "Bearer  "]:
        try:
            resp = await client.get("/v1/whoami", headers={"Authorization": value})
        except (ValueError, UnicodeEncodeError):
            continue  # the client refuses to send it at all
        assert resp.status in (400, 401), value[:20]
    await asyncio.sleep(0)


async def test_metrics_can_require_a_token(tmp_path: Path) -> None:
    """Finding 5: the clip-cache hit counter on an open /metrics told tenants of each
    other's replies; operators can close it with METRICS_TOKEN."""
    s = settings(tmp_path, metrics_token="metrics-token-0123456789")
    async with TestClient(TestServer(build_app(build_context(s)))) as client:
        assert (await client.get("/metrics")).status == 401
        assert (await client.get("/metrics", headers=bearer("wrong"))).status == 401
        tenant_token = bearer(hs256(tenant="acme"))
        assert (await client.get("/metrics", headers=tenant_token)).status == 401
        ok = await client.get("/metrics", headers=bearer("metrics-token-0123456789"))
        assert ok.status == 200 and "rate_limit_rejections" in await ok.text()
        assert (await client.get("/healthz")).status == 200  # probes stay open


async def test_speak_refuses_what_would_speak_too_long(client: TestClient) -> None:
    digits = " ".join(f"{1000 + (i * 7919) % 9000}" for i in range(400))[:2000]
    resp = await client.post(
        "/v1/speak",
        json={"text": digits, "tts": {"speed": 0.5}},
        headers=bearer(hs256(tenant="globex")),
    )
    assert resp.status == 413
    error = (await resp.json())["error"]
    assert error["code"] == "too_large" and "at most 60 s" in error["message"]


def test_one_error_tree_request_errors_are_not_auth_errors() -> None:
    """A malformed body is the request's fault, not an authentication failure: handlers and
    middleware that catch AuthError must not see it (they did when every HTTP error was
    one)."""
    from auth.errors import (
        AuthError,
        BadRequest,
        InvalidTokenError,
        RequestError,
        TooLarge,
        Unavailable,
    )

    for error in (BadRequest, TooLarge, Unavailable):
        assert issubclass(error, RequestError) and not issubclass(error, AuthError)
    assert issubclass(InvalidTokenError, AuthError) and issubclass(AuthError, RequestError)
    assert (BadRequest.status, TooLarge.status, Unavailable.status) == (400, 413, 503)
