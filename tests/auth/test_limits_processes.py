"""Limits hold across processes: two real `serve` processes sharing the embedded store,
and two sharing a real redis-server started here."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.auth.tokens import HS_SECRET, hs256

REPO = Path(__file__).resolve().parents[2]
N = 7


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def start_servers(
    tmp_path: Path, count: int, **env: str
) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    ports = [free_port() for _ in range(count)]
    limits = {"acme": {"requests_per_minute": N}, "globex": {"requests_per_minute": 1000}}
    procs = []
    for port in ports:
        e = dict(
            os.environ,
            CACHE_PATH=str(tmp_path),
            HTTP_HOST="127.0.0.1",
            HTTP_PORT=str(port),
            AUTH_JWT_SECRET=HS_SECRET,
            AUTH_AUDIENCE="voice-agent",
            TENANT_LIMITS=json.dumps(limits),
            **env,
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "agent", "serve"],
                cwd=REPO,
                env=e,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    for port in ports:
        wait_for_port(port)
    return procs, ports


def wait_for_a_fresh_window() -> None:
    # limits count per wall-clock minute; start with enough of the minute left that all
    # requests land in one window
    if time.time() % 60 > 40:
        time.sleep(60 - time.time() % 60 + 0.5)


async def hammer(ports: list[int], tenant: str, total: int) -> list[int]:
    token = hs256(tenant=tenant)
    async with aiohttp.ClientSession() as http:

        async def one(i: int) -> int:
            url = f"http://127.0.0.1:{ports[i % len(ports)]}/v1/whoami"
            async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
                return r.status

        return list(await asyncio.gather(*(one(i) for i in range(total))))


@pytest.mark.slow  # starts server processes
@pytest.mark.parametrize("backend", ["embedded", "redis"])
async def test_exactly_n_per_window_across_two_servers(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    env = {}
    if backend == "redis":
        env["RATE_LIMIT_REDIS_URL"] = request.getfixturevalue("redis_url")
    procs, ports = start_servers(tmp_path, 2, **env)
    try:
        await asyncio.to_thread(wait_for_a_fresh_window)
        acme, globex = await asyncio.gather(
            hammer(ports, "acme", 3 * N), hammer(ports, "globex", 3 * N)
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(20)
    assert acme.count(200) == N and acme.count(429) == 2 * N, acme
    assert globex.count(200) == 3 * N  # the other tenant is unaffected
