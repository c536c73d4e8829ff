"""Tool failures the LLM reads (livekit's ToolError), typed so metrics can count each kind."""

from __future__ import annotations

from livekit.agents.llm import ToolError


class InvalidArgumentsError(ToolError):
    """The LLM's arguments do not match the tool's schema; nothing was requested."""


class ToolTimeoutError(ToolError):
    """The service did not answer within the tool's timeout."""


class ToolRefusedError(ToolError):
    """The tool's address is not one tools may reach (agent/tools/guard.py)."""


def outcome_of(error: BaseException | None) -> str:
    """The metrics label of a call's end."""
    if error is None:
        return "ok"
    if isinstance(error, InvalidArgumentsError):
        return "invalid_arguments"
    if isinstance(error, ToolTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(error, ToolRefusedError):
        return "refused"
    return "error"
