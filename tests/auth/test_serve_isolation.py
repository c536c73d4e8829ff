"""Tenant isolation against the real ``python -m agent serve`` process (issue acceptance):
rooms, grants, bounded and fair ``/v1/speak``, threads, nesting, token rules, secrets."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.auth.test_limits_processes import free_port, wait_for_port
from tests.auth.tokens import AUDIENCE, HS_SECRET, hs256
from tests.fake_livekit import FakeLiveKit

REPO = Path(__file__).resolve().parents[2]
DIGITS = " ".join(f"{1000 + (i * 7919) % 9000}" for i in range(400))[:2000]


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    url: str
    fake: FakeLiveKit

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    fake = FakeLiveKit()
    await fake.start()
    port = free_port()
    env = dict(
        os.environ,
        CACHE_PATH=str(tmp_path),
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        AUTH_JWT_SECRET=HS_SECRET,
        AUTH_AUDIENCE=AUDIENCE,
        LIVEKIT_URL=fake.url.replace("ws://", "http://"),
        LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET="a-livekit-secret-of-forty-characters-000",
        LOG_LEVEL="WARNING",
    )
    proc = start_serve(env)
    try:
        await asyncio.to_thread(wait_for_port, port)
        yield Serve(proc, f"http://127.0.0.1:{port}", fake)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 20)
        await fake.aclose()


def start_serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def bearer(tenant: str, **claims: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {hs256(tenant=tenant, iss=None, **claims)}"}


async def speak(
    http: aiohttp.ClientSession, url: str, tenant: str, text: str, speed: float | None = None
) -> tuple[int, bytes, float]:
    body: dict[str, object] = {"text": text}
    if speed is not None:
        body["tts"] = {"speed": speed}
    start = time.monotonic()
    async with http.post(f"{url}/v1/speak", json=body, headers=bearer(tenant)) as resp:
        data = await resp.read()
        return resp.status, data, time.monotonic() - start


class PeakRss:
    """Samples a process's RSS every 20 ms while it runs."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc, self.peak = proc, proc.memory_info().rss
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> PeakRss:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, self.proc.memory_info().rss)


async def test_rooms_belong_to_tenants_and_no_token_reaches_metadata(serve: Serve) -> None:
    acme = bearer("acme")
    async with aiohttp.ClientSession() as http:

        async def dispatch(room: str, headers: dict[str, str] = acme) -> int:
            url = f"{serve.url}/v1/dispatch"
            async with http.post(url, json={"room": room}, headers=headers) as resp:
                return resp.status

        assert await dispatch("globex-support-42") == 403
        assert await dispatch("acme-support\n42") == 400
        assert await dispatch("acme-support-\u202e42") == 400
        assert serve.fake.dispatches == []
        assert await dispatch("acme-support-42") == 200
    (_, request), *_ = serve.fake.dispatches
    assert request.room == "acme-support-42"
    metadata = json.loads(request.metadata)
    assert "token" not in metadata and "grant" in metadata
    assert acme["Authorization"].split()[1] not in request.metadata


async def test_speak_cost_is_bounded_and_fair(serve: Serve) -> None:
    long_text = " ".join(
        f"Item {i}: the quick brown fox jumps over the lazy dog near river {i}." for i in range(12)
    )
    async with aiohttp.ClientSession() as http:
        # warm: the voice loads on first use
        status, _, _ = await speak(http, serve.url, "acme", "Hello.")
        assert status == 200
        async with PeakRss(serve.ps) as rss:
            base = rss.peak
            status, body, _ = await speak(http, serve.url, "acme", DIGITS, speed=0.5)
        assert status == 413, body[:200]
        assert "at most 60 s" in json.loads(body)["error"]["message"]
        print(f"2 000 digits at speed 0.5: 413, peak RSS +{(rss.peak - base) / 1e6:.0f} MB")
        assert rss.peak - base < 300 << 20

        # tenant A's long request (under the cap) runs; B's short one is not stuck behind it
        async with PeakRss(serve.ps) as rss:
            base = rss.peak
            long_req = asyncio.create_task(speak(http, serve.url, "acme", long_text))
            await asyncio.sleep(0.3)
            status, short_audio, short_s = await speak(http, serve.url, "globex", "Hello again.")
            assert status == 200 and len(short_audio) > 44 + 2 * 22050 // 2
            assert not long_req.done(), "the long request should still be running"
            long_status, long_audio, long_s = await long_req
        assert long_status == 200 and len(long_audio) > 2 * 22050 * 30
        print(f"short request {short_s:.2f} s while the long one took {long_s:.2f} s")
        print(f"long request: {(len(long_audio) - 44) / 2 / 22050:.1f} s of audio, ", end="")
        print(f"peak RSS +{(rss.peak - base) / 1e6:.0f} MB")
        assert short_s < 3.0
        assert rss.peak - base < 300 << 20


async def test_distinct_speeds_create_no_threads(serve: Serve) -> None:
    speeds = [round(0.5 + 0.025 * i, 3) for i in range(60)]
    async with aiohttp.ClientSession() as http:
        for speed in (1.0, 1.5, 0.7):  # warm: the voice, the executor threads of the loop
            assert (await speak(http, serve.url, "acme", "Hi.", speed))[0] == 200
        before = serve.ps.num_threads()
        for speed in speeds:
            assert (await speak(http, serve.url, "acme", "Hi.", speed))[0] == 200
        after = serve.ps.num_threads()
    print(f"60 distinct speeds: threads {before} -> {after}")
    assert after - before < 10, (before, after)


async def test_hostile_json_and_tokens_get_4xx(serve: Serve) -> None:
    deep = '{"text": ' + "[" * 10_000 + "]" * 10_000 + "}"
    now = int(time.time())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{serve.url}/v1/speak", data=deep, headers=bearer("acme")) as resp:
            assert resp.status == 400
            assert "nested deeper" in (await resp.json())["error"]["message"]
        for headers in (
            bearer("acme", exp=now + 2 * 86400),  # lives longer than the maximum
            bearer("acme", iat=now, exp=now + 86400 + 3600),
            bearer("acme", exp=str(now + 60)),  # a string exp
            bearer("acme\u200b"),
            bearer("*"),
            bearer(" "),
        ):
            async with http.get(f"{serve.url}/v1/whoami", headers=headers) as resp:
                assert resp.status == 401, headers
        async with http.get(f"{serve.url}/v1/whoami", headers=bearer("acme")) as resp:
            assert resp.status == 200


def test_a_short_hs256_secret_is_a_configuration_error(tmp_path: Path) -> None:
    env = dict(os.environ, CACHE_PATH=str(tmp_path), AUTH_JWT_SECRET="twelve-bytes")
    out = subprocess.run(
        [sys.executable, "-m", "agent", "serve"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "AUTH_JWT_SECRET must be at least 32 bytes" in out.stderr


async def test_readyz_says_whether_the_voice_loaded(serve: Serve, tmp_path: Path) -> None:
    """/readyz under serve was a constant 200."""
    async with aiohttp.ClientSession() as http:

        async def ready(url: str) -> tuple[int, dict[str, object]]:
            for _ in range(300):
                async with http.get(f"{url}/readyz") as resp:
                    body = await resp.json()
                    if body["models"] != "loading":
                        return resp.status, body
                await asyncio.sleep(0.2)
            raise AssertionError("the voice neither loaded nor failed within 60 s")

        assert await ready(serve.url) == (
            200,
            {"ready": True, "models": "loaded", "livekit": "not used"},
        )
        port = free_port()
        broken_env = dict(
            os.environ,
            CACHE_PATH=str(tmp_path / "broken"),
            HTTP_HOST="127.0.0.1",
            HTTP_PORT=str(port),
            TTS_VOICE=str(tmp_path / "no-such-voice.onnx"),
            LOG_LEVEL="ERROR",
        )
        proc = start_serve(broken_env)
        try:
            await asyncio.to_thread(wait_for_port, port)
            status, body = await ready(f"http://127.0.0.1:{port}")
            assert status == 503 and body["models"] == "failed"
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 20)
