"""Tool declarations: what an operator or a tenant writes, parsed strictly and bounded.

An HTTP tool::

    {"name": "get_weather", "description": "Current weather for a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]},
     "url": "https://api.example.com/weather", "method": "GET", "timeout_s": 5,
     "headers": {"Authorization": "env:WEATHER_TOKEN"}}

An MCP server: ``{"url": "https://mcp.example.com/mcp", "headers": {...}, "tools": [...]}``
(``tools``: only these of its tools; default all).

A header value ``env:NAME`` is read from the worker's environment when the tool is called, so
secrets sit in the environment, never in metadata. Whose declaration may name which variable
is decided by :class:`SecretScope`: the operator's own (``TOOLS``, ``TENANT_LIMITS``) any;
a tenant's dispatch metadata only the names its ``TENANT_LIMITS`` entry lists in
``tool_secrets`` (otherwise a tenant could send the worker's LiveKit secret to its own URL).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

MAX_TOOLS = 32  # per source and per session: every tool costs prompt tokens on every turn
MAX_MCP_SERVERS = 4
MAX_DESCRIPTION_CHARS = 1024
MAX_SCHEMA_BYTES = 8 * 1024
MAX_SCHEMA_DEPTH = 8
MAX_HEADERS = 16
MAX_TIMEOUT_S = 30.0
DEFAULT_TIMEOUT_S = 5.0
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")  # what OpenAI-style APIs accept
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
# names the built-in call tools take; a declared tool may not shadow them
RESERVED_NAMES = frozenset({"end_call", "transfer_call"})


class ToolSpecError(ValueError):
    """A tool or MCP declaration that cannot be used; ``field`` names the offending key."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class SecretScope:
    """Which ``env:NAME`` header references a declaration may make (None: any)."""

    names: frozenset[str] | None = None

    def allows(self, name: str) -> bool:
        return self.names is None or name in self.names


OPERATOR = SecretScope()
NO_SECRETS = SecretScope(frozenset())


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    value: str = field(repr=False)  # a literal, or the variable's name when ``from_env``
    from_env: bool = False


@dataclass(frozen=True, slots=True)
class HttpToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]
    url: str
    method: str = "GET"
    timeout_s: float = DEFAULT_TIMEOUT_S
    headers: tuple[Header, ...] = ()

    def function_schema(self) -> dict[str, Any]:
        """What the LLM sees: name, description and the JSON Schema of the arguments."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


@dataclass(frozen=True, slots=True)
class McpServerSpec:
    url: str
    headers: tuple[Header, ...] = ()
    tools: tuple[str, ...] | None = None  # only these tools of the server (None: all)
    timeout_s: float = DEFAULT_TIMEOUT_S


def load_json_setting(raw: str, name: str) -> Any:
    """A setting holding JSON, or ``@path`` to a file of it; empty means none."""
    text = raw.strip()
    if not text:
        return None
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as e:
            raise ToolSpecError(f"{name}: cannot read {text[1:]}: {e.strerror}") from None
    if len(text) > 256 * 1024:
        raise ToolSpecError(f"{name} is larger than 256 KiB")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ToolSpecError(f"{name} is not valid JSON: {e}") from None


def parse_tools(value: Any, where: str, scope: SecretScope) -> tuple[HttpToolSpec, ...]:
    """A JSON list of HTTP tool declarations (None: no tools)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ToolSpecError(f"{where} must be a list of tools", field=where)
    if len(value) > MAX_TOOLS:
        raise ToolSpecError(f"{where} has more than {MAX_TOOLS} tools", field=where)
    specs = tuple(_tool(item, f"{where}[{i}]", scope) for i, item in enumerate(value))
    check_unique([s.name for s in specs], where)
    return specs


def parse_mcp_servers(value: Any, where: str, scope: SecretScope) -> tuple[McpServerSpec, ...]:
    """A JSON list of MCP server declarations (or of plain URLs)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ToolSpecError(f"{where} must be a list of MCP servers", field=where)
    if len(value) > MAX_MCP_SERVERS:
        raise ToolSpecError(f"{where} has more than {MAX_MCP_SERVERS} servers", field=where)
    return tuple(_mcp(item, f"{where}[{i}]", scope) for i, item in enumerate(value))


def check_unique(names: list[str], where: str) -> None:
    """Tool names must be unique (within a list, and across every source a session
    combines)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ToolSpecError(f"{where}: tool {name!r} is declared twice", field=where)
        seen.add(name)


def _tool(item: Any, where: str, scope: SecretScope) -> HttpToolSpec:
    data = _object(item, where)
    _only(
        data, {"name", "description", "parameters", "url", "method", "timeout_s", "headers"}, where
    )
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ToolSpecError(
            f"{where}.name must be 1-64 letters, digits, _ or -, starting with a letter",
            field=f"{where}.name",
        )
    if name in RESERVED_NAMES:
        raise ToolSpecError(f"{where}.name {name!r} is a built-in tool", field=f"{where}.name")
    description = data.get("description")
    if not isinstance(description, str) or not description.strip():
        raise ToolSpecError(
            f"{where}.description must be a non-empty string", f"{where}.description"
        )
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise ToolSpecError(
            f"{where}.description is longer than {MAX_DESCRIPTION_CHARS} characters",
            field=f"{where}.description",
        )
    method = data.get("method", "GET")
    if method not in ("GET", "POST"):
        raise ToolSpecError(f"{where}.method must be GET or POST", field=f"{where}.method")
    return HttpToolSpec(
        name=name,
        description=description,
        parameters=_parameters(data.get("parameters"), f"{where}.parameters"),
        url=_url(data.get("url"), f"{where}.url"),
        method=method,
        timeout_s=_timeout(data.get("timeout_s"), f"{where}.timeout_s"),
        headers=_headers(data.get("headers"), f"{where}.headers", scope),
    )


def _mcp(item: Any, where: str, scope: SecretScope) -> McpServerSpec:
    if isinstance(item, str):
        item = {"url": item}
    data = _object(item, where)
    _only(data, {"url", "headers", "tools", "timeout_s"}, where)
    tools = data.get("tools")
    if tools is not None and (
        not isinstance(tools, list)
        or len(tools) > MAX_TOOLS
        or not all(isinstance(t, str) and _NAME.match(t) for t in tools)
    ):
        raise ToolSpecError(
            f"{where}.tools must be a list of at most {MAX_TOOLS} tool names", f"{where}.tools"
        )
    return McpServerSpec(
        url=_url(data.get("url"), f"{where}.url"),
        headers=_headers(data.get("headers"), f"{where}.headers", scope),
        tools=tuple(tools) if tools is not None else None,
        timeout_s=_timeout(data.get("timeout_s"), f"{where}.timeout_s"),
    )


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {"type": "object", "properties": {}}
    schema = _object(value, where)
    if schema.get("type") != "object":
        raise ToolSpecError(f"{where} must be a JSON Schema of type object", field=where)
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise ToolSpecError(f"{where} is larger than {MAX_SCHEMA_BYTES} bytes", field=where)
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        raise ToolSpecError(f"{where} is nested deeper than {MAX_SCHEMA_DEPTH}", field=where)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        raise ToolSpecError(
            f"{where} is not a valid JSON Schema: {e.message}", field=where
        ) from None
    return schema


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _url(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > 2048:
        raise ToolSpecError(f"{where} must be a URL of at most 2048 characters", field=where)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolSpecError(f"{where} must be an http:// or https:// URL", field=where)
    if parts.username or parts.password:
        raise ToolSpecError(f"{where} must not carry credentials (use headers)", field=where)
    return value


def _timeout(value: Any, where: str) -> float:
    if value is None:
        return DEFAULT_TIMEOUT_S
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TIMEOUT_S
    ):
        raise ToolSpecError(f"{where} must be a number in (0, {MAX_TIMEOUT_S:g}]", field=where)
    return float(value)


def _headers(value: Any, where: str, scope: SecretScope) -> tuple[Header, ...]:
    if value is None:
        return ()
    data = _object(value, where)
    if len(data) > MAX_HEADERS:
        raise ToolSpecError(f"{where} has more than {MAX_HEADERS} headers", field=where)
    headers = []
    for name, raw in data.items():
        if not _HEADER.match(name):
            raise ToolSpecError(f"{where}: invalid header name {name!r}", field=f"{where}.{name}")
        if not isinstance(raw, str) or len(raw) > 4096 or "\n" in raw or "\r" in raw:
            raise ToolSpecError(
                f"{where}.{name} must be a one-line string of at most 4096 characters",
                field=f"{where}.{name}",
            )
        if raw.startswith("env:"):
            variable = raw[4:]
            if not _ENV_NAME.match(variable):
                raise ToolSpecError(
                    f"{where}.{name}: {variable!r} is not an environment variable name",
                    field=f"{where}.{name}",
                )
            if not scope.allows(variable):
                raise ToolSpecError(
                    f"{where}.{name}: env:{variable} is not among this tenant's tool_secrets",
                    field=f"{where}.{name}",
                )
            headers.append(Header(name, variable, from_env=True))
        else:
            headers.append(Header(name, raw))
    return tuple(headers)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ToolSpecError(f"{where} must be an object", field=where)
    return value


def _only(data: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ToolSpecError(f"{where}: unknown field {key!r}", field=f"{where}.{key}")
