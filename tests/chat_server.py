"""An OpenAI-compatible chat endpoint on loopback that records every request it receives.

It answers with a fixed streamed reply (or an HTTP error when told to), so tests can check
exactly which messages the worker sent an LLM: the context budget, memory, greetings. Told
to call tools (``tool_calls``), it answers a request with the next queued tool call, and a
request that ends with a tool result with a reply built from that result
(``tool_reply_prefix`` + the result), as a model with tool calling would.
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
        self.tools: list[list[dict[str, Any]]] = []  # the tools offered in each request
        self.tool_calls: list[tuple[str, Any]] = []  # (name, arguments) to answer with, in turn
        self.tool_reply_prefix = "Here is what I found: "
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.port = 0

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages = body.get("messages", [])
        self.requests.append(messages)
        self.tools.append(body.get("tools") or [])
        if self.fail_status is not None:
            return web.json_response(
                {"error": {"message": self.fail_message, "type": "invalid_request_error"}},
                status=self.fail_status,
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        last = messages[-1] if messages else {}
        if last.get("role") != "tool" and self.tool_calls:
            await self._tool_call(resp, *self.tool_calls.pop(0))
            return resp
        reply = self.reply
        if last.get("role") == "tool":
            reply = self.tool_reply_prefix + _text(last.get("content"))
        for word in reply.split(" "):
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

    async def _tool_call(self, resp: web.StreamResponse, name: str, arguments: Any) -> None:
        args = arguments if isinstance(arguments, str) else json.dumps(arguments)
        call = {
            "index": 0,
            "id": f"call_{len(self.requests)}",
            "type": "function",
            "function": {"name": name, "arguments": args},
        }
        for delta, finish in (
            ({"role": "assistant", "tool_calls": [call]}, None),
            ({}, "tool_calls"),
        ):
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()

    async def start(self) -> RecordingChatServer:
        app = web.Application(client_max_size=8 << 20)
        app.router.add_post("/v1/chat/completions", self.completions)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")
