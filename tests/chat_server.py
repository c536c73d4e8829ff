"""An OpenAI-compatible chat endpoint on loopback that records every request it receives.

It answers with a fixed streamed reply (or an HTTP error when told to), so tests can check
exactly which messages the worker sent an LLM: the context budget, memory, greetings.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class RecordingChatServer:
    def __init__(self, reply: str = "Sure, noted.") -> None:
        self.reply = reply
        self.fail_status: int | None = None  # answer every request with this HTTP status
        self.fail_message = "error"
        self.requests: list[list[dict[str, Any]]] = []  # the messages of each request
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body.get("messages", []))
        if self.fail_status is not None:
            return web.json_response(
                {"error": {"message": self.fail_message, "type": "invalid_request_error"}},
                status=self.fail_status,
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for word in self.reply.split(" "):
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}],
            }
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def start(self) -> RecordingChatServer:
        app = web.Application(client_max_size=8 << 20)
        app.router.add_post("/v1/chat/completions", self.completions)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1"
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
