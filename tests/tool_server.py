"""A real HTTP tool service on loopback that records every request it receives."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    method: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


class ToolServer:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.slow_s = 5.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _record(self, request: web.Request) -> None:
        body = await request.json() if request.can_read_body else None
        self.received.append(
            Received(request.path, request.method, dict(request.query), body, dict(request.headers))
        )

    async def weather(self, request: web.Request) -> web.Response:
        await self._record(request)
        city = request.query.get("city", "?")
        return web.json_response({"city": city, "forecast": "sunny", "celsius": 21})

    async def book(self, request: web.Request) -> web.Response:
        await self._record(request)
        body = await request.json()
        return web.json_response({"booked": True, "table_for": body.get("people")})

    async def slow(self, request: web.Request) -> web.Response:
        await self._record(request)
        await asyncio.sleep(self.slow_s)
        return web.json_response({"late": True})

    async def fail(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"error": "database down"}, status=500)

    async def redirect(self, request: web.Request) -> web.Response:
        await self._record(request)
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    async def big(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(text="x" * 100_000)

    async def start(self) -> ToolServer:
        app = web.Application()
        app.router.add_get("/weather", self.weather)
        app.router.add_post("/book", self.book)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/fail", self.fail)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/big", self.big)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
