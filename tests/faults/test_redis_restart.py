"""The limit store dies and comes back under a running ``serve`` process.

Promise: while Redis is down every limited request gets a clear 503 (fail closed; or is let
through with ``RATE_LIMIT_FAIL_OPEN``), the server itself stays up, and once Redis is back
on the same address requests are limited again without a restart of the worker.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.auth.test_limits_processes import free_port, start_servers, wait_for_port
from tests.auth.tokens import hs256


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    assert server, "redis-server is installed by scripts/bootstrap"
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return proc


async def statuses(port: int, count: int) -> list[tuple[int, dict[str, object]]]:
    token = hs256(tenant="globex")
    out = []
    async with aiohttp.ClientSession() as http:
        for _ in range(count):
            url = f"http://127.0.0.1:{port}/v1/whoami"
            async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
                out.append((r.status, await r.json()))
    return out


@pytest.mark.parametrize("fail_open", [False, True])
async def test_redis_killed_and_restarted_under_a_running_server(
    tmp_path: Path, fail_open: bool
) -> None:
    redis_port = free_port()
    redis = start_redis(redis_port, tmp_path)
    env = {"RATE_LIMIT_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
    if fail_open:
        env["RATE_LIMIT_FAIL_OPEN"] = "true"
    procs, ports = start_servers(tmp_path, 1, **env)
    try:
        before = await statuses(ports[0], 3)
        assert [s for s, _ in before] == [200, 200, 200]

        redis.send_signal(signal.SIGKILL)
        redis.wait(10)
        down = await statuses(ports[0], 3)
        if fail_open:
            assert [s for s, _ in down] == [200, 200, 200]
        else:
            assert [s for s, _ in down] == [503, 503, 503]
            assert all(body["error"]["code"] == "limiter_unavailable" for _, body in down), down
        assert procs[0].poll() is None  # the server lives through it

        redis = start_redis(redis_port, tmp_path)
        recovered: list[int] = []
        for _ in range(50):  # the client reconnects on its own
            recovered = [s for s, _ in await statuses(ports[0], 1)]
            if recovered == [200]:
                break
            await asyncio.sleep(0.2)
        assert recovered == [200]
        # and limits are enforced again: the counter lives in the new Redis
        scan = ["redis-cli", "-p", str(redis_port), "--scan"]
        keys = (
            await asyncio.to_thread(subprocess.run, scan, capture_output=True, text=True)
        ).stdout
        assert "globex" in keys
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
        redis.terminate()
        redis.wait(10)
