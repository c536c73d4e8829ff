"""The real ``python -m agent start`` against the fake LiveKit endpoint, hurt on purpose.

- a job process is SIGKILLed: LiveKit is told that job failed, the worker stays registered,
  the other job's process keeps its room connection, and the next dispatch is accepted;
- SIGTERM while a job runs: availability is refused from that moment, the running job is
  allowed to end, and the worker exits 0 as soon as it has (well inside ``DRAIN_TIMEOUT_S``).
"""

from __future__ import annotations

import asyncio
import signal
import time

import psutil
import pytest
from livekit.protocol import agent as proto

from tests.agent.test_worker import AGENT_NAME, collect, start_worker, stop_worker, worker_env
from tests.fake_livekit import FakeLiveKit

pytestmark = pytest.mark.slow


def process_of_connection(worker_pid: int, peer_port: int) -> psutil.Process:
    """The job process that opened the room connection coming from ``peer_port``."""
    for child in psutil.Process(worker_pid).children(recursive=True):
        try:
            if any(c.laddr and c.laddr.port == peer_port for c in child.net_connections("tcp")):
                return child
        except psutil.NoSuchProcess:
            continue
    raise LookupError(f"no job process owns port {peer_port}")


async def offer(fake: FakeLiveKit, job_id: str) -> bool:
    answer = await fake.request_job(
        job_id, room=f"room-{job_id}", metadata="", agent_name=AGENT_NAME
    )
    return bool(answer.available)


async def join_request_port(fake: FakeLiveKit) -> int:
    request = await asyncio.wait_for(fake.rtc_requests.get(), timeout=120)
    return int(request.transport.get_extra_info("peername")[1])


async def test_a_killed_job_process_leaves_the_worker_and_other_jobs_running(cache_dir) -> None:
    fake = FakeLiveKit()
    await fake.start()
    env = worker_env(cache_dir, fake.url, WORKER_CAPACITY="4", NUM_IDLE_PROCESSES="2")
    proc = await start_worker(env)
    output: list[str] = []
    reader = asyncio.create_task(collect(proc, output))
    try:
        await fake.next_message("register", within=120)
        assert (
            await fake.request_job("J_1", room="r1", metadata="", agent_name=AGENT_NAME)
        ).available
        victim = process_of_connection(proc.pid, await join_request_port(fake))
        assert (
            await fake.request_job("J_2", room="r2", metadata="", agent_name=AGENT_NAME)
        ).available
        survivor = process_of_connection(proc.pid, await join_request_port(fake))
        assert victim.pid != survivor.pid

        victim.send_signal(signal.SIGKILL)
        failed = await fake.next_message(
            "update_job", lambda m: m.update_job.job_id == "J_1", within=60
        )
        assert failed.update_job.status == proto.JobStatus.JS_FAILED

        assert proc.returncode is None  # the worker is alive
        assert survivor.is_running() and survivor.status() != psutil.STATUS_ZOMBIE
        assert any(c.status == psutil.CONN_ESTABLISHED for c in survivor.net_connections("tcp"))
        # and it keeps taking work
        assert await offer(fake, "J_3")
        await join_request_port(fake)
        assert not any(
            m.HasField("update_job")
            and m.update_job.job_id == "J_2"
            and m.update_job.status != proto.JobStatus.JS_RUNNING
            for m in fake.seen
        ), "the other job was disturbed"
    finally:
        await stop_worker(proc)
        reader.cancel()
        await fake.aclose()


async def test_sigterm_refuses_new_jobs_and_exits_0_once_running_jobs_end(cache_dir) -> None:
    fake = FakeLiveKit()
    await fake.start()
    # after release_rtc() the SDK's connect retries fail at once and the job ends within
    # seconds; the drain is far longer, so an exit before it means the drain saw the end
    drain_s = 60
    env = worker_env(cache_dir, fake.url, WORKER_CAPACITY="4", DRAIN_TIMEOUT_S=str(drain_s))
    proc = await start_worker(env)
    output: list[str] = []
    reader = asyncio.create_task(collect(proc, output))
    try:
        await fake.next_message("register", within=120)
        assert (
            await fake.request_job("J_1", room="r1", metadata="", agent_name=AGENT_NAME)
        ).available
        await join_request_port(fake)

        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await fake.next_message(
            "update_worker", lambda m: m.update_worker.status == proto.WorkerStatus.WS_FULL
        )
        assert not await offer(fake, "J_2")  # draining: no new work
        await asyncio.sleep(1)
        assert proc.returncode is None  # still waiting for the running job

        fake.release_rtc()  # the running job's session ends
        code = await asyncio.wait_for(proc.wait(), timeout=drain_s + 30)
        took = time.monotonic() - signalled
        assert code == 0
        assert took < drain_s, f"exited only after {took:.1f}s: the drain did not see the job end"
        assert "draining worker" in "".join(output)
    finally:
        await stop_worker(proc)
        reader.cancel()
        await fake.aclose()
