"""MCP servers' tools, through livekit-agents' own MCP client (streamable HTTP).

Each session connects to its MCP servers when it starts and lists their tools; a server that
cannot be reached, times out or is refused by the address guard is logged and left out, and
the session starts without it. Every request the MCP client makes (the first and every one
after) is checked by the guard: the client follows no redirects, and a host that resolves to
a private address is refused unless the operator allowed it.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx2
from livekit.agents import llm
from livekit.agents.llm.mcp import MCPServerHTTP

from agent.log import logger
from agent.tools.arguments import ArgumentCheck
from agent.tools.guard import AddressGuard
from agent.tools.runner import CallPolicy, instrumented
from agent.tools.spec import MAX_TOOLS, RESERVED_NAMES, McpServerSpec


class GuardedMcpServer(MCPServerHTTP):
    def __init__(self, spec: McpServerSpec, guard: AddressGuard, headers: dict[str, str]) -> None:
        super().__init__(
            spec.url,
            transport_type="streamable_http",
            allowed_tools=list(spec.tools) if spec.tools is not None else None,
            headers=headers,
            timeout=spec.timeout_s,
            client_session_timeout_seconds=spec.timeout_s,
        )
        self._guard = guard

    def _create_http_client(
        self,
        headers: dict[str, Any] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        client = super()._create_http_client(headers, timeout, auth)
        client.event_hooks = {"request": [self._check], "response": []}
        return client

    async def _check(self, request: httpx2.Request) -> None:
        await self._guard.check_resolved(str(request.url))


def _headers(spec: McpServerSpec) -> dict[str, str] | None:
    headers = {}
    for header in spec.headers:
        value = os.environ.get(header.value) if header.from_env else header.value
        if value is None:
            return None
        headers[header.name] = value
    return headers


async def connect(
    specs: tuple[McpServerSpec, ...],
    guard: AddressGuard,
    policy: CallPolicy,
    taken: set[str],
) -> tuple[list[llm.Tool], list[GuardedMcpServer]]:
    """Connect to each server and wrap its tools; ``taken``: names already in use (a
    server's tool never replaces a declared or built-in one)."""
    tools: list[llm.Tool] = []
    servers: list[GuardedMcpServer] = []
    for spec in specs:
        headers = _headers(spec)
        if headers is None:
            logger.warning(
                "MCP server left out: a header's variable is not set",
                extra={"mcp_server": spec.url},
            )
            continue
        server = GuardedMcpServer(spec, guard, headers)
        try:
            async with asyncio.timeout(spec.timeout_s):
                await guard.check_resolved(spec.url)
                await server.initialize()
                listed = await server.list_tools()
        except Exception as e:
            logger.warning(
                "MCP server unavailable: the session starts without its tools",
                extra={"mcp_server": spec.url, "error": f"{type(e).__name__}: {e}"[:300]},
            )
            await server.aclose()
            continue
        servers.append(server)
        for raw in listed[:MAX_TOOLS]:
            name = raw.info.name
            if name in taken or name in RESERVED_NAMES:
                logger.warning(
                    "MCP tool left out: its name is taken",
                    extra={"mcp_server": spec.url, "tool": name},
                )
                continue
            taken.add(name)
            tools.append(_wrapped(raw, policy))
    return tools, servers


def _wrapped(raw: llm.RawFunctionTool[Any, Any], policy: CallPolicy) -> llm.Tool:
    schema = raw.info.raw_schema
    check = ArgumentCheck(schema.get("parameters") or {"type": "object"})

    async def body(arguments: dict[str, Any], _context: Any) -> Any:
        return await raw(check(arguments))

    return instrumented(schema, "mcp", body, policy)
