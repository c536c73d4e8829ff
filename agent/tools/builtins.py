"""The call tools the worker itself provides (``BUILTIN_TOOLS``).

``end_call``: the LLM decides the caller is done ("that's all, bye"). The tool's result asks
the LLM for a short goodbye; when that reply has been spoken (or sent, in a text session),
the participant's session ends (``close_reason`` ``end_call``) — the session, not the room:
other participants' sessions go on, and the entrypoint leaves a room nobody is left in.
livekit-agents' own EndCallTool shuts down the whole job, which would hang up on everyone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from livekit.agents import llm
from livekit.agents.voice import RunContext

from agent.tools.runner import CallPolicy, instrumented

END_CALL_REASON = "end_call"
BUILTIN_NAMES = ("end_call",)

END_CALL_DESCRIPTION = (
    "End the call. Call it only when the user clearly says they are done (for example "
    "'that's all, goodbye'), not when they pause, hesitate or ask to wait. After it, say a "
    "one-sentence goodbye."
)


def end_call_tool(end: Callable[[], Coroutine[Any, Any, None]], policy: CallPolicy) -> llm.Tool:
    """``end`` closes the caller's session; it runs once the goodbye has been delivered."""
    ending: set[asyncio.Task[None]] = set()

    async def body(_arguments: dict[str, Any], context: RunContext[Any]) -> str:
        def after_goodbye(_: object) -> None:
            task: asyncio.Task[None] = asyncio.get_running_loop().create_task(end())
            ending.add(task)
            task.add_done_callback(ending.discard)

        # the tool's reply (the goodbye) continues this speech: end when it is done
        context.speech_handle.add_done_callback(after_goodbye)
        return "The call will end after your reply: say a short goodbye."

    schema = {
        "name": "end_call",
        "description": END_CALL_DESCRIPTION,
        "parameters": {"type": "object", "properties": {}},
    }
    # no filler: ending is instant
    return instrumented(
        schema, "builtin", body, CallPolicy(log_arguments=policy.log_arguments, filler_after_s=0)
    )
