"""A stand-in for the parts of a LiveKit server a worker talks to, on loopback.

It speaks the real worker protocol (``/agent``: protobuf ``WorkerMessage`` in,
``ServerMessage`` out), so the real ``python -m agent start`` registers with it, answers
availability requests and runs jobs. Media cannot be faked here: a job's room connection
(``/rtc``) is recorded and then left unanswered, which keeps the job busy until it gives up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web
from livekit.protocol import agent, agent_dispatch, models


@dataclass
class FakeLiveKit:
    host: str = "127.0.0.1"
    port: int = 0
    worker_messages: asyncio.Queue[agent.WorkerMessage] = field(default_factory=asyncio.Queue)
    rtc_requests: asyncio.Queue[web.Request] = field(default_factory=asyncio.Queue)
    registered: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[agent.WorkerMessage] = field(default_factory=list)
    dispatches: list[tuple[str, agent_dispatch.CreateAgentDispatchRequest]] = field(
        default_factory=list
    )
    _ws: web.WebSocketResponse | None = None
    _runner: web.AppRunner | None = None
    _held: list[asyncio.Future[None]] = field(default_factory=list)
    _rtc_released: bool = False

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/agent", self._agent_ws)
        app.router.add_route("*", "/rtc{tail:.*}", self._rtc)
        app.router.add_post(
            "/twirp/livekit.AgentDispatchService/CreateDispatch", self._create_dispatch
        )
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def aclose(self) -> None:
        for fut in self._held:
            if not fut.done():
                fut.set_result(None)
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _agent_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                continue
            wm = agent.WorkerMessage()
            wm.ParseFromString(msg.data)
            if wm.HasField("register"):
                reply = agent.ServerMessage()
                reply.register.worker_id = "AW_fake"
                reply.register.server_info.version = "1.9.0"
                await ws.send_bytes(reply.SerializeToString())
                self.registered.set()
            elif wm.HasField("ping"):
                pong = agent.ServerMessage()
                pong.pong.last_timestamp = wm.ping.timestamp
                await ws.send_bytes(pong.SerializeToString())
                continue
            self.seen.append(wm)
            await self.worker_messages.put(wm)
        return ws

    async def _create_dispatch(self, request: web.Request) -> web.Response:
        req = agent_dispatch.CreateAgentDispatchRequest()
        req.ParseFromString(await request.read())
        self.dispatches.append((request.headers.get("Authorization", ""), req))
        created = agent_dispatch.AgentDispatch(
            id=f"AD_{len(self.dispatches)}",
            agent_name=req.agent_name,
            room=req.room,
            metadata=req.metadata,
        )
        return web.Response(body=created.SerializeToString(), content_type="application/protobuf")

    async def _rtc(self, request: web.Request) -> web.StreamResponse:
        await self.rtc_requests.put(request)
        if not self._rtc_released:
            # never answer: the job stays in its connection attempt, i.e. busy
            held: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._held.append(held)
            await held
        return web.Response(status=503)

    def release_rtc(self) -> None:
        """Answer every held room connection with 503, and every later one at once (the
        SDK's retries fail fast): those jobs fail to join and end."""
        self._rtc_released = True
        for fut in self._held:
            if not fut.done():
                fut.set_result(None)

    async def terminate_job(self, job_id: str) -> None:
        assert self._ws is not None, "no worker connected"
        msg = agent.ServerMessage()
        msg.termination.job_id = job_id
        await self._ws.send_bytes(msg.SerializeToString())

    async def request_job(
        self, job_id: str, *, room: str, metadata: str, agent_name: str
    ) -> agent.AvailabilityResponse:
        """Offer a job; assign it if the worker accepts. Returns the worker's answer."""
        assert self._ws is not None, "no worker connected"
        job = agent.Job(
            id=job_id,
            dispatch_id=f"AD_{job_id}",
            type=agent.JobType.JT_ROOM,
            room=models.Room(sid=f"RM_{room}", name=room),
            metadata=metadata,
            agent_name=agent_name,
        )
        offer = agent.ServerMessage()
        offer.availability.job.CopyFrom(job)
        await self._ws.send_bytes(offer.SerializeToString())
        answer = await self.next_message("availability", lambda m: m.availability.job_id == job_id)
        if answer.availability.available:
            assign = agent.ServerMessage()
            assign.assignment.job.CopyFrom(job)
            assign.assignment.url = self.url
            assign.assignment.token = "fake-participant-token"
            await self._ws.send_bytes(assign.SerializeToString())
        return answer.availability

    async def next_message(
        self, kind: str, match: object = None, *, within: float = 60.0
    ) -> agent.WorkerMessage:
        """The next worker message of ``kind`` (a oneof field name) satisfying ``match``."""
        async with asyncio.timeout(within):
            while True:
                wm = await self.worker_messages.get()
                if wm.HasField(kind) and (match is None or match(wm)):  # type: ignore[operator]
                    return wm
