"""The real ``python -m agent start`` against a fake LiveKit ``/agent`` endpoint on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from agent.worker.entry import EXIT_CONNECTION_FAILED
from auth.grants import DispatchGrants
from tests.fake_livekit import FakeLiveKit

REPO = Path(__file__).resolve().parents[2]
AGENT_NAME = "test-voice-agent"
GRANT_SECRET = "test-dispatch-grant-secret-0123456789abcdef"


def worker_env(cache_dir: Path, url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LIVEKIT_URL=url,
        LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET="a-test-secret-that-is-long-enough-for-hs256",
        AGENT_NAME=AGENT_NAME,
        CACHE_PATH=str(cache_dir),
        WORKER_HTTP_HOST="127.0.0.1",
        WORKER_HTTP_PORT="0",
        NUM_IDLE_PROCESSES="1",
        DRAIN_TIMEOUT_S="5",
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


async def start_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "start",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: stop_worker() ends all of it
    )


async def stop_worker(proc: asyncio.subprocess.Process) -> None:
    """Kill the worker and everything it started (forkserver, job processes, inference
    process). Killing the main process alone can leave a job process hanging in interpreter
    shutdown with the worker's stdout still open, and ``proc.wait()`` waits for that pipe."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), 30)


async def collect(proc: asyncio.subprocess.Process, into: list[str]) -> None:
    assert proc.stdout is not None
    async for line in proc.stdout:
        into.append(line.decode(errors="replace"))


@pytest.mark.slow
async def test_start_registers_accepts_dispatch_and_refuses_when_full(cache_dir: Path) -> None:
    fake = FakeLiveKit()
    await fake.start()
    proc = await start_worker(worker_env(cache_dir, fake.url, WORKER_CAPACITY="1"))
    output: list[str] = []
    reader = asyncio.create_task(collect(proc, output))
    try:
        register = await fake.next_message("register", within=120)
        assert register.register.agent_name == AGENT_NAME
        # the worker's first status report: its load function has run (the first offer,
        # answered only after a fresh load reading, once waited past 60 s here)
        await fake.next_message("update_worker", within=120)

        # unusable metadata is refused by the request handler, before any process is used
        bad = await fake.request_job(
            "J_bad", room="room-0", metadata="{not json", agent_name=AGENT_NAME
        )
        assert not bad.available

        metadata = json.dumps({"instructions": "You are the hotel front desk."})
        first = await fake.request_job(
            "J_one", room="room-1", metadata=metadata, agent_name=AGENT_NAME
        )
        assert first.available
        # the entrypoint ran in a job process: it tried to join the room with the token
        rtc = await asyncio.wait_for(fake.rtc_requests.get(), timeout=120)
        assert rtc.headers.get("Authorization") == "Bearer fake-participant-token"

        # capacity 1 and one job busy: our load function reports full, the job is refused
        second = await fake.request_job("J_two", room="room-2", metadata="", agent_name=AGENT_NAME)
        assert not second.available
        # and the status it reports to LiveKit says so
        full = await fake.next_message(
            "update_worker", lambda m: m.update_worker.load >= 1.0, within=15
        )
        assert full.update_worker.job_count == 1

        log = "".join(output)
        assert "job started" in log and "room-1" in log
        assert '"instructions_from": "metadata"' in log, log[-3000:]
        assert "dispatch rejected" in log and "bad_metadata" in log
        assert "room-0" not in log.split("job started", 1)[1]  # the bad job never started
        # the models live in the worker's inference process; the job process loaded none
        assert "inference server ready" in log and "whisper model loaded" in log
        assert "engines served by the inference process" in log
        assert log.count("whisper model loaded") == 1, log[-3000:]
        # one JSON stream: the job process's record, formatted by the main process, carries
        # the job's bound context
        started = next(json.loads(line) for line in output if '"job started"' in line)
        assert started["room"] == "room-1" and started["job_id"] == "J_one"
        assert started["tenant"] == "anonymous" and started["level"] == "info"
        livekit_lines = [line for line in output if '"logger": "livekit.agents"' in line]
        assert livekit_lines and all(json.loads(line) for line in livekit_lines)

        proc.send_signal(signal.SIGTERM)  # drains for DRAIN_TIMEOUT_S at most
        # the job's room connection fails now (instead of hanging in the SDK's retries for
        # 15 s), so the drain ends with the job
        fake.release_rtc()
        code = await asyncio.wait_for(proc.wait(), timeout=60)
        assert code == 0
    finally:
        await stop_worker(proc)
        reader.cancel()
        await fake.aclose()


@pytest.mark.slow  # starts server processes
async def test_start_exits_75_when_it_gives_up_connecting(cache_dir: Path) -> None:
    # a port nothing listens on: every connection attempt is refused at once
    fake = FakeLiveKit()
    await fake.start()
    url = fake.url
    await fake.aclose()
    env = worker_env(cache_dir, url, MAX_CONNECT_RETRIES="1", NUM_IDLE_PROCESSES="0")
    proc = await start_worker(env)
    output: list[str] = []
    reader = asyncio.create_task(collect(proc, output))
    code = await asyncio.wait_for(proc.wait(), timeout=90)
    await reader
    assert code == EXIT_CONNECTION_FAILED, "".join(output)[-2000:]
    assert "gave up connecting to LiveKit" in "".join(output)


@pytest.mark.slow
async def test_dispatch_needs_a_valid_token_and_respects_concurrent_sessions(
    cache_dir: Path,
) -> None:
    from livekit.protocol import agent as proto

    from tests.auth.tokens import HS_SECRET, hs256

    # the limit store lives under the shared CACHE_PATH: a tenant of its own per run, so
    # sessions left by an interrupted earlier run cannot fill this one's slots
    tenant = f"acme-{os.getpid()}"
    fake = FakeLiveKit()
    await fake.start()
    env = worker_env(
        cache_dir,
        fake.url,
        WORKER_CAPACITY="4",
        NUM_IDLE_PROCESSES="2",
        AUTH_JWT_SECRET=HS_SECRET,
        DISPATCH_GRANT_SECRET=GRANT_SECRET,
        TENANT_LIMITS=json.dumps({tenant: {"concurrent_sessions": 2}}),
    )
    grants = DispatchGrants(GRANT_SECRET.encode())
    proc = await start_worker(env)
    output: list[str] = []
    reader = asyncio.create_task(collect(proc, output))

    async def offer(
        job_id: str, token: str | None, room: str | None = None, key: str = "token"
    ) -> bool:
        meta = json.dumps({key: token}) if token else ""
        answer = await fake.request_job(
            job_id, room=room or f"{tenant}-{job_id}", metadata=meta, agent_name=AGENT_NAME
        )
        return answer.available

    try:
        await fake.next_message("register", within=120)
        acme = hs256(tenant=tenant, aud=None, iss=None)
        assert not await offer("J_none", None)  # no token
        assert not await offer("J_forged", acme[:-4] + "AAAA")  # bad signature
        initech = hs256(tenant="initech", aud=None, iss=None)
        assert not await offer("J_initech", initech, room="initech-J_initech")
        # finding 1: a valid token, but another tenant's room (or a bad room name)
        assert not await offer("J_other", acme, room="globex-support-42")
        assert not await offer("J_newline", acme, room=f"{tenant}-a\nb")
        # a grant from /v1/dispatch is bound to its room
        grant, _ = grants.issue(tenant, f"{tenant}-J_2", AGENT_NAME)
        assert not await offer("J_moved", grant, room=f"{tenant}-elsewhere", key="grant")
        assert await offer("J_1", acme)
        assert await offer("J_2", grant, key="grant")
        assert not await offer("J_3", acme)  # acme's two sessions are busy

        # end one session: LiveKit terminates the job, the job gives its slot back
        await fake.terminate_job("J_1")
        # rooms answer now: the terminated job's connection attempt ends at once instead of
        # after the SDK's 15 s of retries
        fake.release_rtc()
        await fake.next_message(
            "update_job",
            lambda m: (
                m.update_job.job_id == "J_1" and m.update_job.status != proto.JobStatus.JS_RUNNING
            ),
            within=60,
        )
        accepted = False
        for attempt in range(20):
            if await offer(f"J_4_{attempt}", acme):
                accepted = True
                break
            await asyncio.sleep(0.5)
        assert accepted, "the freed slot was never given back"
        log = "".join(output)
        assert acme not in log and HS_SECRET not in log  # no token or secret in the logs
        assert "invalid_token" in log and "tenant_not_allowed" in log and "rate_limited" in log
        assert "room_not_allowed" in log and "invalid_room" in log
        assert grant not in log
    finally:
        await stop_worker(proc)
        reader.cancel()
        await fake.aclose()
