"""``/agent``: the worker protocol, and the dispatch of agent jobs into rooms.

A dispatch (Twirp ``CreateDispatch``, or a new room when a worker registered with no agent
name) becomes a job offered to the registered workers of that agent name in turn: an
``availability`` request, then on acceptance an ``assignment`` with a token for the room.
Jobs end when their room closes (``termination``) or when the worker reports them done.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web
from livekit.protocol import agent, agent_dispatch

from .room import Room, log, new_sid
from .signalling import SERVER_VERSION, agent_token, bearer

if TYPE_CHECKING:
    from .server import LiveKitTestServer

AVAILABILITY_TIMEOUT_S = 10.0
DISPATCH_PATIENCE_S = 30.0


@dataclass
class Worker:
    id: str
    ws: web.WebSocketResponse
    agent_name: str = ""
    status: int = agent.WorkerStatus.WS_AVAILABLE
    load: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: agent.ServerMessage) -> None:
        async with self.lock:
            await self.ws.send_bytes(message.SerializeToString())


@dataclass
class JobRecord:
    job: agent.Job
    worker: Worker | None = None
    status: int = agent.JobStatus.JS_PENDING
    identity: str = ""
    answers: list[agent.AvailabilityResponse] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class AgentDispatcher:
    def __init__(self, server: LiveKitTestServer) -> None:
        self._server = server
        self.workers: dict[str, Worker] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.dispatches: list[agent_dispatch.AgentDispatch] = []
        self._answers: dict[str, asyncio.Future[agent.AvailabilityResponse]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the worker connection -----------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            claims = self._server.verifier.verify(bearer(request))
        except Exception:
            return web.Response(status=401, text="invalid token")
        if claims.video is None or not claims.video.agent:
            return web.Response(status=401, text="token grants no agent")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        worker = Worker(id=new_sid("AW_"), ws=ws)
        try:
            async for message in ws:
                if message.type != WSMsgType.BINARY:
                    continue
                msg = agent.WorkerMessage()
                try:
                    msg.ParseFromString(message.data)
                except Exception:
                    continue
                await self._on_message(worker, msg)
        finally:
            self.workers.pop(worker.id, None)
            self._server.note("worker_gone", worker.agent_name, worker.id)
            for record in self.jobs.values():
                if record.worker is worker and not record.done.is_set():
                    record.status = agent.JobStatus.JS_FAILED
                    record.done.set()
        return ws

    async def _on_message(self, worker: Worker, msg: agent.WorkerMessage) -> None:
        kind = msg.WhichOneof("message")
        if kind == "register":
            worker.agent_name = msg.register.agent_name
            self.workers[worker.id] = worker
            reply = agent.ServerMessage()
            reply.register.worker_id = worker.id
            reply.register.server_info.version = SERVER_VERSION
            await worker.send(reply)
            self._server.note("worker_registered", worker.agent_name, worker.id)
        elif kind == "availability":
            answer = self._answers.pop(msg.availability.job_id, None)
            if answer is not None and not answer.done():
                answer.set_result(msg.availability)
        elif kind == "update_worker":
            worker.status = msg.update_worker.status
            worker.load = msg.update_worker.load
        elif kind == "update_job":
            record = self.jobs.get(msg.update_job.job_id)
            if record is not None:
                record.status = msg.update_job.status
                if record.status in (agent.JobStatus.JS_SUCCESS, agent.JobStatus.JS_FAILED):
                    record.done.set()
                    status = agent.JobStatus.Name(record.status)
                    self._server.note(
                        "job_ended", record.job.room.name, f"{record.job.id} {status}"
                    )
        elif kind == "ping":
            pong = agent.ServerMessage()
            pong.pong.last_timestamp = msg.ping.timestamp
            pong.pong.timestamp = int(asyncio.get_running_loop().time() * 1000)
            await worker.send(pong)

    # --- dispatch ------------------------------------------------------------------------

    def create(self, room: Room, agent_name: str, metadata: str) -> agent_dispatch.AgentDispatch:
        """Record a dispatch and assign its job in the background, like LiveKit does."""
        dispatch = agent_dispatch.AgentDispatch(
            id=new_sid("AD_"), agent_name=agent_name, room=room.name, metadata=metadata
        )
        self.dispatches.append(dispatch)
        task = asyncio.ensure_future(self._assign(room, dispatch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return dispatch

    async def _assign(self, room: Room, dispatch: agent_dispatch.AgentDispatch) -> None:
        job = agent.Job(
            id=f"AJ_{next(self._ids):04d}",
            dispatch_id=dispatch.id,
            type=agent.JobType.JT_ROOM,
            room=room.info(),
            metadata=dispatch.metadata,
            agent_name=dispatch.agent_name,
        )
        record = JobRecord(job)
        self.jobs[job.id] = record
        # like LiveKit, a dispatch waits while every worker of the name reports itself full
        # (a worker's load moves with its inference queue); a worker that answers "not
        # available" has refused the job, and it is not offered again
        for _ in range(int(DISPATCH_PATIENCE_S / 0.5)):
            if room.closed.is_set():
                break
            candidates = [
                w
                for w in self.workers.values()
                if w.agent_name == dispatch.agent_name
                and w.status == agent.WorkerStatus.WS_AVAILABLE
            ]
            if not candidates:
                await asyncio.sleep(0.5)
                continue
            for worker in sorted(candidates, key=lambda w: w.load):
                if await self._offer(worker, room, record):
                    return
            break
        record.status = agent.JobStatus.JS_FAILED
        record.done.set()
        self._server.note("job_unassigned", room.name, job.id)
        log.info("no worker took the job", extra={"job": job.id, "room": room.name})

    async def _offer(self, worker: Worker, room: Room, record: JobRecord) -> bool:
        """Offer the job to ``worker``; True once it accepted and was assigned."""
        job = record.job
        answer = await self._ask(worker, job)
        if answer is None:
            return False
        record.answers.append(answer)
        if not answer.available:
            return False
        record.worker = worker
        record.identity = answer.participant_identity or f"agent-{job.id}"
        assignment = agent.ServerMessage()
        assignment.assignment.job.CopyFrom(job)
        assignment.assignment.url = self._server.url
        assignment.assignment.token = agent_token(
            self._server,
            room=room.name,
            identity=record.identity,
            name=answer.participant_name or "agent",
            attributes=dict(answer.participant_attributes),
        )
        await worker.send(assignment)
        record.status = agent.JobStatus.JS_RUNNING
        self._server.note("job_assigned", room.name, job.id)
        return True

    async def _ask(self, worker: Worker, job: agent.Job) -> agent.AvailabilityResponse | None:
        answer = asyncio.get_running_loop().create_future()
        self._answers[job.id] = answer
        offer = agent.ServerMessage()
        offer.availability.job.CopyFrom(job)
        try:
            await worker.send(offer)
            return await asyncio.wait_for(answer, AVAILABILITY_TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            return None
        finally:
            self._answers.pop(job.id, None)

    async def room_closed(self, room: Room) -> None:
        """The room is gone: every job still running in it is terminated."""
        for record in self.jobs.values():
            if record.job.room.name != room.name or record.done.is_set():
                continue
            if record.worker is not None:
                termination = agent.ServerMessage()
                termination.termination.job_id = record.job.id
                try:
                    await record.worker.send(termination)
                except ConnectionError:
                    pass
            record.done.set()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for worker in list(self.workers.values()):
            await worker.ws.close()
