"""A room's tools: what the operator, the tenant's policy and the dispatch declared, combined.

Trust runs as for everything else a session is given (agent/session/participant_policy.py):
the operator's ``TOOLS``/``MCP_SERVERS`` apply to every session; the tenant's entry in
``TENANT_LIMITS`` adds its own (``tools``, ``mcp_servers``); the tenant's backend may add
more in the dispatch metadata (verified before the job is accepted). Room participants can
add none: a config message has no such key. Names must be unique across the sources, so a
tenant cannot replace the operator's tool with its own.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from livekit.agents import llm

from agent.log import logger
from agent.tools.builtins import BUILTIN_NAMES, end_call_tool
from agent.tools.guard import AddressGuard, parse_allowed_hosts
from agent.tools.http_tool import HttpTool
from agent.tools.runner import CallPolicy, instrumented
from agent.tools.spec import (
    MAX_MCP_SERVERS,
    MAX_TOOLS,
    NO_SECRETS,
    OPERATOR,
    HttpToolSpec,
    McpServerSpec,
    SecretScope,
    ToolSpecError,
    check_unique,
    load_json_setting,
    parse_mcp_servers,
    parse_tools,
)

if TYPE_CHECKING:  # settings validates these declarations at start: no import back
    from agent.settings import Settings
    from agent.tools.mcp_tools import GuardedMcpServer


@dataclass(frozen=True, slots=True)
class TenantTools:
    """A tenant's tool policy (its ``TENANT_LIMITS`` entry)."""

    tools: tuple[HttpToolSpec, ...] = ()
    mcp_servers: tuple[McpServerSpec, ...] = ()
    secrets: SecretScope = NO_SECRETS  # which env: names its dispatch metadata may use


def tenant_tools(limits: Any, tenant: str) -> TenantTools:
    """Parse the tool keys of a tenant's limits entry (auth.limits.Limits)."""
    where = f"TENANT_LIMITS[{tenant!r}]"
    secrets = limits.tool_secrets
    return TenantTools(
        tools=parse_tools(limits.tools, f"{where}.tools", OPERATOR),
        mcp_servers=parse_mcp_servers(limits.mcp_servers, f"{where}.mcp_servers", OPERATOR),
        secrets=SecretScope(frozenset(secrets)) if secrets else NO_SECRETS,
    )


@dataclass
class SessionTools:
    """One session's tools and the MCP connections to close with it."""

    tools: list[llm.Tool]
    servers: list[GuardedMcpServer] = field(default_factory=list)

    async def aclose(self) -> None:
        for server in self.servers:
            try:
                await server.aclose()
            except Exception:  # a server gone away mid-session: nothing left to close
                logger.debug("MCP server close failed", exc_info=True)


@dataclass(frozen=True, slots=True)
class RoomTools:
    http: tuple[HttpToolSpec, ...] = ()
    mcp: tuple[McpServerSpec, ...] = ()
    builtins: tuple[str, ...] = ()
    guard: AddressGuard = field(default_factory=AddressGuard)
    policy: CallPolicy = field(default_factory=CallPolicy)
    max_response_bytes: int = 16 * 1024

    @property
    def empty(self) -> bool:
        return not (self.declared or self.builtins)

    @property
    def declared(self) -> bool:
        """Whether the operator or tenant declared tools (beyond the built-in ones)."""
        return bool(self.http or self.mcp)

    @classmethod
    def for_room(
        cls,
        settings: Settings,
        tenant: TenantTools | None = None,
        metadata_tools: Any = None,
        metadata_mcp: Any = None,
    ) -> RoomTools:
        """The room's tools; raises :class:`ToolSpecError` naming what is wrong."""
        tenant = tenant or TenantTools()
        http = operator_tools(settings) + tenant.tools
        http += parse_tools(metadata_tools, "metadata.tools", tenant.secrets)
        mcp = operator_mcp_servers(settings) + tenant.mcp_servers
        mcp += parse_mcp_servers(metadata_mcp, "metadata.mcp_servers", tenant.secrets)
        if len(http) > MAX_TOOLS:
            raise ToolSpecError(f"a session may have at most {MAX_TOOLS} tools")
        if len(mcp) > MAX_MCP_SERVERS:
            raise ToolSpecError(f"a session may have at most {MAX_MCP_SERVERS} MCP servers")
        check_unique([t.name for t in http], "tools")
        return cls(
            http=http,
            mcp=mcp,
            builtins=builtin_names(settings),
            guard=AddressGuard(parse_allowed_hosts(settings.tools_allowed_hosts)),
            policy=CallPolicy(
                filler=settings.tool_filler,
                filler_after_s=settings.tool_filler_after_s,
                log_arguments=settings.log_tool_arguments,
            ),
            max_response_bytes=settings.tool_max_response_bytes,
        )

    async def open_session(self, end_call: Callable[[], Coroutine[Any, Any, None]]) -> SessionTools:
        """The tools of one session; ``end_call`` ends it (the built-in tool's action)."""
        tools: list[llm.Tool] = []
        for spec in self.http:
            tool = HttpTool(spec, self.guard, max_response_bytes=self.max_response_bytes)

            async def body(arguments: dict[str, Any], _context: Any, tool: HttpTool = tool) -> str:
                return await tool.call(arguments)

            tools.append(instrumented(spec.function_schema(), "http", body, self.policy))
        if "end_call" in self.builtins:
            tools.append(end_call_tool(end_call, self.policy))
        if not self.mcp:
            return SessionTools(tools)
        from agent.tools import mcp_tools  # the MCP client, only where servers are named

        taken = {s.name for s in self.http} | set(self.builtins)
        found, servers = await mcp_tools.connect(self.mcp, self.guard, self.policy, taken)
        return SessionTools(tools + found, servers)


def tenant_tools_of(settings: Settings, tenant: str) -> TenantTools:
    """The tenant's tool policy from ``TENANT_LIMITS`` (none for a tenant without an entry)."""
    from auth.limits import TenantPolicy

    limits = TenantPolicy.parse(settings.tenant_limits).entry(tenant)
    return TenantTools() if limits is None else tenant_tools(limits, tenant)


def operator_tools(settings: Settings) -> tuple[HttpToolSpec, ...]:
    return parse_tools(load_json_setting(settings.tools, "TOOLS"), "TOOLS", OPERATOR)


def operator_mcp_servers(settings: Settings) -> tuple[McpServerSpec, ...]:
    return parse_mcp_servers(
        load_json_setting(settings.mcp_servers, "MCP_SERVERS"), "MCP_SERVERS", OPERATOR
    )


def builtin_names(settings: Settings) -> tuple[str, ...]:
    names = tuple(n.strip() for n in settings.builtin_tools.split(",") if n.strip())
    for name in names:
        if name not in BUILTIN_NAMES:
            raise ToolSpecError(
                f"BUILTIN_TOOLS: unknown tool {name!r} (choose from {', '.join(BUILTIN_NAMES)})"
            )
    return names


def check_settings(settings: Settings) -> None:
    """Every tool setting parsed once at start (raises ToolSpecError / ValueError)."""
    operator_tools(settings)
    operator_mcp_servers(settings)
    builtin_names(settings)
    parse_allowed_hosts(settings.tools_allowed_hosts)
    from auth.limits import TenantPolicy

    for tenant, limits in TenantPolicy.parse(settings.tenant_limits).table.items():
        tenant_tools(limits, tenant)
