"""The server: an aiohttp application with ``/rtc``, ``/agent`` and the Twirp API."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiohttp import web
from livekit import api

from .agents import AgentDispatcher
from .room import Room
from .signalling import handle_rtc
from .twirp import TwirpApi

log = logging.getLogger("livekit-test-server")


@dataclass
class LiveKitTestServer:
    api_key: str
    api_secret: str
    host: str = "127.0.0.1"
    port: int = 0
    # LiveKit's defaults are 300 s and 20 s; tests want rooms to end sooner
    empty_timeout_s: float = 300.0
    departure_timeout_s: float = 20.0
    rooms: dict[str, Room] = field(default_factory=dict)
    # ("joined" | "left", room, identity), ("job_assigned", room, job), ... in order
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.verifier = api.TokenVerifier(self.api_key, self.api_secret)
        self.dispatcher = AgentDispatcher(self)
        self.twirp = TwirpApi(self)
        self._runner: web.AppRunner | None = None
        self._noted = asyncio.Event()

    def note(self, kind: str, room: str, detail: str) -> None:
        self.events.append((kind, room, detail))
        self._noted.set()

    async def wait_for_event(
        self, kind: str, room: str, within: float = 60.0
    ) -> tuple[str, str, str]:
        """The first event of ``kind`` in ``room`` (past or future)."""
        async with asyncio.timeout(within):
            while True:
                for event in self.events:
                    if event[0] == kind and event[1] == room:
                        return event
                self._noted.clear()
                await self._noted.wait()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        # the SDK tries single peer connection mode first and falls back to /rtc on a 404
        app.router.add_get("/rtc/v1", lambda _: web.Response(status=404))
        app.router.add_get("/rtc/validate", lambda _: web.Response(text="ok"))
        app.router.add_get("/rtc", lambda r: handle_rtc(self, r))
        app.router.add_get("/agent", self.dispatcher.handle)
        self.twirp.routes(app)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def aclose(self) -> None:
        for room in list(self.rooms.values()):
            await room.close()
        await self.dispatcher.aclose()
        if self._runner is not None:
            await self._runner.cleanup()

    def room(self, name: str, *, create: bool = False, metadata: str = "") -> Room:
        existing = self.rooms.get(name)
        if existing is not None or not create:
            if existing is None:
                raise KeyError(name)
            return existing
        room = Room(
            name,
            empty_timeout_s=self.empty_timeout_s,
            departure_timeout_s=self.departure_timeout_s,
            on_closed=self._room_closed,
            metadata=metadata,
        )
        self.rooms[name] = room
        self.note("room_created", name, room.sid)
        # a worker registered without an agent name gets every new room
        if any(w.agent_name == "" for w in self.dispatcher.workers.values()):
            self.dispatcher.create(room, "", "")
        return room

    async def _room_closed(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        self.note("room_closed", room.name, room.sid)
        await self.dispatcher.room_closed(room)

    async def delete_room(self, name: str) -> None:
        room = self.rooms.get(name)
        if room is not None:
            await room.close()
