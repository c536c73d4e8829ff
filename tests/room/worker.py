"""The room tests' and the room benchmark's side of a deployment: the real worker
(``python -m agent start`` with its shared inference process) against the LiveKit test
server, dispatch through its HTTP API, and callers with LiveKit tokens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from livekit import api

from tests.auth.tokens import HS_SECRET, hs256
from tests.livekit_server import LiveKitTestServer
from tests.room.caller import RoomCaller

REPO = Path(__file__).resolve().parents[2]
API_KEY = "room-test-key"
API_SECRET = "room-test-secret-of-a-reasonable-length-0123"
AGENT_NAME = "room-test-agent"
GRANT_SECRET = "room-test-dispatch-grant-secret-0123456789"
# a tenant with tight limits (the limit store is shared under CACHE_PATH: one per run)
LIMITED_TENANT = f"limited{os.getpid()}"
# a tenant whose policy greets every caller
GREETER_TENANT = f"greeter{os.getpid()}"
GREETING = "Welcome to the greeter line. How can I help you today?"
# a tenant whose calls may be recorded, by LiveKit egress
RECORDER_TENANT = f"recorder{os.getpid()}"
# the conversation tests' tenant: its calls may be recorded here (a file per participant)
CONVERSATION_TENANT = f"rooms{os.getpid()}"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Worker:
    """A running ``python -m agent start`` and what it printed."""

    proc: asyncio.subprocess.Process
    http: str
    output: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def log(self) -> str:
        return "".join(self.output)

    def records(self, message: str) -> list[dict[str, Any]]:
        found = []
        for line in self.output:
            if message in line:
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        return found

    async def metric(self, name: str) -> float:
        """Sum of a metric's samples on the worker's /metrics (every label set)."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.http}/metrics") as r:
            text = await r.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total


def worker_env(server: LiveKitTestServer, cache_dir: Path, http_port: int, **extra: str) -> dict:
    env = dict(os.environ)
    env.update(
        LIVEKIT_URL=server.url,
        LIVEKIT_API_KEY=API_KEY,
        LIVEKIT_API_SECRET=API_SECRET,
        AGENT_NAME=AGENT_NAME,
        CACHE_PATH=str(cache_dir),
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(http_port),
        WORKER_HTTP_HOST="127.0.0.1",
        WORKER_HTTP_PORT="0",
        AUTH_JWT_SECRET=HS_SECRET,
        DISPATCH_GRANT_SECRET=GRANT_SECRET,
        TENANT_LIMITS=json.dumps(
            {
                LIMITED_TENANT: {"concurrent_sessions": 1, "max_sessions_per_room": 1},
                GREETER_TENANT: {"greeting": GREETING},
                RECORDER_TENANT: {"recording": "egress"},
                CONVERSATION_TENANT: {"recording": True},
                "*": {},
            }
        ),
        NUM_IDLE_PROCESSES="1",
        WORKER_CAPACITY="4",
        DRAIN_TIMEOUT_S="60",
        LLM_SEED="7",
        LLM_TEMPERATURE="0",
        LOG_LEVEL=os.environ.get("ROOM_TEST_LOG_LEVEL", "INFO"),
    )
    env.update(extra)
    return env


async def start_worker(server: LiveKitTestServer, cache_dir: Path, **extra: str) -> Worker:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "start",
        cwd=REPO,
        env=worker_env(server, cache_dir, port, **extra),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    worker = Worker(proc, f"http://127.0.0.1:{port}")

    async def read() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            worker.output.append(line.decode(errors="replace"))

    worker.reader = asyncio.create_task(read())
    name = extra.get("AGENT_NAME", AGENT_NAME)
    registered = asyncio.ensure_future(server.wait_for_event("worker_registered", name, 180))
    exited = asyncio.ensure_future(proc.wait())
    await asyncio.wait({registered, exited}, return_when=asyncio.FIRST_COMPLETED)
    exited.cancel()
    if not registered.done() or registered.exception() is not None:
        registered.cancel()
        await stop_worker(worker)
        raise RuntimeError("the worker did not register:\n" + worker.log()[-4000:])
    return worker


async def stop_worker(worker: Worker) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.proc.pid, signal.SIGKILL)
    await asyncio.wait_for(worker.proc.wait(), 30)
    if worker.reader is not None:
        worker.reader.cancel()


def tenant_token(tenant: str, **claims: Any) -> str:
    return hs256(tenant=tenant, aud=None, iss=None, **claims)


async def dispatch(worker: Worker, tenant: str, room: str, **body: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{worker.http}/v1/dispatch",
            json={"room": room, **body},
            headers={"Authorization": f"Bearer {tenant_token(tenant)}"},
        ) as r:
            payload = await r.json()
            assert r.status == 200, payload
            return dict(payload)


def caller_token(identity: str, room: str) -> str:
    return (
        api.AccessToken(API_KEY, API_SECRET)
        .with_identity(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )


async def join(
    server: LiveKitTestServer, identity: str, room: str, *, mic: bool = True
) -> RoomCaller:
    caller = RoomCaller(identity)
    await caller.connect(server.url, caller_token(identity, room))
    if mic:
        await caller.publish_mic()
    return caller


async def agent_joined(server: LiveKitTestServer, room: str, within: float = 60.0) -> str:
    """The identity of the agent participant once it is in ``room``."""
    return (await server.wait_for_event("agent_joined", room, within))[2]
