"""What every tool call goes through, whatever the tool: metrics, a log line, the filler.

Wrapping each tool (HTTP, MCP, built-in) in one place keeps the three kinds alike for the
operator: ``voice_tool_calls{kind,outcome}`` and ``voice_tool_duration_seconds{kind}`` count
them, one log record says which tool ran, how long and how it ended (its arguments only with
``LOG_TOOL_ARGUMENTS=true``: they are the caller's words), and a voice caller whose tool runs
longer than ``TOOL_FILLER_AFTER_S`` hears a short phrase ("One moment…") instead of silence.
The phrase is spoken through the session's TTS, so the clip cache serves it after the first
time; it is not added to the chat history.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from livekit.agents import llm
from livekit.agents.voice import RunContext

from agent.log import logger
from agent.obs.metrics import TOOL_CALLS, TOOL_FILLERS, TOOL_SECONDS
from agent.tools.errors import outcome_of


@dataclass(frozen=True, slots=True)
class CallPolicy:
    filler: str = "One moment, let me check."
    filler_after_s: float = 1.0  # 0: never
    log_arguments: bool = False


def instrumented(
    schema: dict[str, Any],
    kind: str,
    body: Callable[[dict[str, Any], RunContext[Any]], Awaitable[Any]],
    policy: CallPolicy,
) -> llm.RawFunctionTool[Any, Any]:
    """A function tool with ``schema`` whose calls run ``body`` under the call policy."""
    name = schema["name"]

    async def call(raw_arguments: dict[str, object], context: RunContext[Any]) -> Any:
        started = time.monotonic()
        filler = _filler_timer(context, policy)
        error: BaseException | None = None
        try:
            return await body(dict(raw_arguments), context)
        except BaseException as e:
            error = e
            raise
        finally:
            if filler is not None:
                filler.cancel()
            elapsed = time.monotonic() - started
            outcome = (
                "cancelled" if isinstance(error, asyncio.CancelledError) else outcome_of(error)
            )
            TOOL_CALLS.labels(kind, outcome).inc()
            TOOL_SECONDS.labels(kind).observe(elapsed)
            extra: dict[str, Any] = {
                "tool": name,
                "tool_kind": kind,
                "outcome": outcome,
                "duration_ms": round(elapsed * 1000),
            }
            # a schema error may quote the arguments: the caller's words, logged only on request
            if error is not None and outcome != "cancelled":
                if policy.log_arguments or outcome != "invalid_arguments":
                    extra["error"] = str(error)[:300]
            if policy.log_arguments:
                extra["arguments"] = raw_arguments
            logger.info("tool called", extra=extra)

    return llm.function_tool(call, raw_schema=schema)


def _filler_timer(context: RunContext[Any], policy: CallPolicy) -> asyncio.TimerHandle | None:
    session = context.session
    if policy.filler_after_s <= 0 or not policy.filler or session.tts is None:
        return None  # a text session has nobody waiting in silence

    def say() -> None:
        try:
            session.say(policy.filler, allow_interruptions=True, add_to_chat_ctx=False)
        except RuntimeError:  # the session is closing: nobody to tell
            return
        TOOL_FILLERS.inc()

    return asyncio.get_running_loop().call_later(policy.filler_after_s, say)
