"""A declared HTTP tool as a livekit function tool.

The LLM's arguments are checked against the declared JSON Schema before any request is made;
GET sends them as query parameters, POST as a JSON body. The answer (JSON or text, cut at
``max_response_bytes``) is the tool result. Every way a call can go wrong (invalid
arguments, a refused address, a timeout, an HTTP error, an unreachable host) becomes a
:class:`ToolError`, whose message the LLM reads and can explain to the caller: a failed tool
never fails the session.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import urljoin

import aiohttp
from livekit.agents.llm import ToolError

from agent.tools.arguments import ArgumentCheck
from agent.tools.errors import ToolRefusedError, ToolTimeoutError
from agent.tools.guard import AddressGuard, BlockedAddressError
from agent.tools.spec import HttpToolSpec

MAX_REDIRECTS = 3


class HttpTool:
    def __init__(
        self, spec: HttpToolSpec, guard: AddressGuard, *, max_response_bytes: int = 16 * 1024
    ) -> None:
        self.spec = spec
        self._guard = guard
        self._max_response_bytes = max_response_bytes
        self._check = ArgumentCheck(spec.parameters)

    def validate(self, arguments: Any) -> dict[str, Any]:
        return self._check(arguments)

    async def call(self, arguments: Any) -> str:
        args = self.validate(arguments)
        spec = self.spec
        try:
            self._guard.check_url(spec.url)
            async with (
                asyncio.timeout(spec.timeout_s),
                aiohttp.ClientSession(
                    connector=self._guard.connector(), headers=self._headers()
                ) as http,
            ):
                return await self._request(http, args)
        except BlockedAddressError:
            raise ToolRefusedError(
                f"{spec.name} is not reachable from here (address refused)"
            ) from None
        except TimeoutError:
            raise ToolTimeoutError(
                f"{spec.name} did not answer within {spec.timeout_s:g} s"
            ) from None
        except aiohttp.ClientError as e:
            if isinstance(e.__cause__, BlockedAddressError) or "resolves to no public" in str(e):
                raise ToolRefusedError(
                    f"{spec.name} is not reachable from here (address refused)"
                ) from None
            raise ToolError(f"{spec.name} could not be reached ({type(e).__name__})") from None

    async def _request(self, http: aiohttp.ClientSession, args: dict[str, Any]) -> str:
        spec, url = self.spec, self.spec.url
        method = spec.method
        for _ in range(MAX_REDIRECTS + 1):
            self._guard.check_url(url)  # every hop: a redirect to 169.254.169.254 is refused
            if method == "GET":
                request = http.get(url, params=_query(args), allow_redirects=False)
            else:
                request = http.post(url, json=args, allow_redirects=False)
            async with request as response:
                if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                    url = urljoin(url, response.headers["Location"])
                    if response.status == 303:
                        method = "GET"
                    continue
                body = await response.content.read(self._max_response_bytes + 1)
                if response.status >= 400:
                    raise ToolError(
                        f"{spec.name} failed: the service answered HTTP {response.status}"
                    )
                return _result_text(body, self._max_response_bytes)
        raise ToolError(f"{spec.name} failed: more than {MAX_REDIRECTS} redirects")

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "local-voice-agent-tool"}
        for header in self.spec.headers:
            if header.from_env:
                value = os.environ.get(header.value)
                if value is None:
                    # the operator's configuration, not the caller's: the LLM hears only
                    # that the tool is unavailable
                    raise ToolError(f"{self.spec.name} is not configured on this worker")
                headers[header.name] = value
            else:
                headers[header.name] = header.value
        return headers


def _query(args: dict[str, Any]) -> dict[str, str]:
    """Query parameters: scalars as text, anything structured as compact JSON."""
    query = {}
    for key, value in args.items():
        if isinstance(value, bool):
            query[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            query[key] = str(value)
        elif value is not None:
            query[key] = json.dumps(value, separators=(",", ":"))
    return query


def _result_text(body: bytes, limit: int) -> str:
    truncated = len(body) > limit
    text = body[:limit].decode("utf-8", errors="replace")
    if not truncated:
        try:  # compact JSON: fewer tokens in the next prompt
            return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
        except ValueError:
            return text
    return text + " …[truncated]"
