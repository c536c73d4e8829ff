"""Dispatch metadata: what a backend may say about a room when it dispatches the agent.

The metadata is a JSON object (or empty)::

    {"instructions": "You are the front desk of ...", "participant": "caller-1",
     "grant": "<signed by /v1/dispatch>", "config": {"audio": false, ...}}

``instructions`` replaces the persona from settings for every session of the room;
``participant`` limits the agent to one participant (audio, config, chat); ``config`` is a
session config message (docs/session-control.md) that every session of the room starts
with; ``tools`` and ``mcp_servers`` add the tenant's own tools to the room's sessions
(docs/tools.md; header secrets only from the variables its policy lists). Who dispatched
is proven by ``grant`` (what ``/v1/dispatch`` writes: short-lived, bound to tenant, room
and agent, auth/grants.py) or, for backends that dispatch through
LiveKit's API themselves, by ``token`` (their own JWT). The worker verifies either before it
accepts the job (one is required when auth is configured) and applies the tenant's room rule
(auth/rooms.py).
Anything else is an error, so a typo in a backend does not silently fall back to defaults:
the request handler rejects the job and logs why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent import json_input
from agent.session.config import ConfigError, SessionConfig, parse_config
from agent.settings import Settings
from agent.tools.box import RoomTools, tenant_tools_of
from agent.tools.spec import ToolSpecError
from plugins.smart_turn import HybridTurnOptions

MAX_METADATA_BYTES = 16 * 1024
MAX_INSTRUCTIONS_CHARS = 8000


class MetadataError(ValueError):
    """Dispatch metadata that cannot be used; ``field`` names the offending key."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class DispatchMetadata:
    instructions: str | None = None
    participant: str | None = None
    token: str | None = field(default=None, repr=False)  # never printed
    grant: str | None = field(default=None, repr=False)
    config: dict[str, Any] | None = None
    tools: list[Any] | None = None  # checked against the tenant's policy in room_tools()
    mcp_servers: list[Any] | None = None

    def session_config(self, base_turn: HybridTurnOptions) -> SessionConfig:
        return parse_config(self.config or {}, base_turn)

    @classmethod
    def parse(cls, raw: str | bytes | None) -> DispatchMetadata:
        if not raw:
            return cls()
        if len(raw) > MAX_METADATA_BYTES:
            raise MetadataError(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
        try:
            data: Any = json_input.loads(raw, what="metadata")
        except json_input.JsonInputError as e:
            raise MetadataError(str(e)) from None
        if not isinstance(data, dict):
            raise MetadataError("metadata must be a JSON object")
        known = {"instructions", "participant", "token", "grant", "config", "tools", "mcp_servers"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MetadataError(f"unknown metadata field {unknown[0]!r}", field=unknown[0])
        return cls(
            instructions=_optional_str(data, "instructions", MAX_INSTRUCTIONS_CHARS),
            participant=_optional_str(data, "participant", 256),
            token=_optional_str(data, "token", 8192),
            grant=_optional_str(data, "grant", 4096),
            config=_config(data.get("config")),
            tools=_list(data, "tools"),
            mcp_servers=_list(data, "mcp_servers"),
        )

    def room_tools(self, settings: Settings, tenant: str) -> RoomTools:
        """The room's tools: the operator's, the tenant's policy's and these; raises
        ``MetadataError`` for a declaration that cannot be used."""
        try:
            return RoomTools.for_room(
                settings, tenant_tools_of(settings, tenant), self.tools, self.mcp_servers
            )
        except ToolSpecError as e:
            raise MetadataError(str(e), field=e.field or "tools") from None


def _config(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        # checked here, in the request handler, so a bad config refuses the job
        parse_config(value if isinstance(value, dict) else "not an object", HybridTurnOptions())
    except ConfigError as e:
        raise MetadataError(f"config: {e.message}", field=f"config.{e.field or ''}") from None
    return dict(value)


def _list(data: dict[str, Any], key: str) -> list[Any] | None:
    value = data.get(key)
    if value is not None and not isinstance(value, list):
        raise MetadataError(f"{key} must be a list", field=key)
    return value


def _optional_str(data: dict[str, Any], key: str, limit: int) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise MetadataError(f"{key} must be a non-empty string", field=key)
    if len(value) > limit:
        raise MetadataError(f"{key} is longer than {limit} characters", field=key)
    return value
