"""A room's use of the memory store: recall at session start, keep at session end.

At start, the remembered conversation becomes the head of the session's history (a system
message with the summary, then the recent messages). At the end, the session's history
(which began with that head, so memory rolls forward) is cut to the last
``keep`` messages; what falls off is folded into the summary by the LLM, off every critical
path (the call is over), with a time limit. Store failures are logged and counted; they
never fail a session: a caller who cannot be recalled is greeted as new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from livekit.agents import llm

from agent.conversation.budget import ContextBudget
from agent.conversation.memory import MAX_SUMMARY_CHARS, MemoryStore, Remembered, remembered_from
from agent.conversation.summary import summarize
from agent.log import logger
from agent.obs.metrics import MEMORY_OPERATIONS

SUMMARY_TIMEOUT_S = 30.0


class SessionMemory:
    def __init__(
        self,
        store: MemoryStore,
        tenant: str,
        *,
        keep: int,
        model: llm.LLM[Any] | None = None,
        budget: ContextBudget | None = None,
        mask: Callable[[str], str] = lambda text: text,
    ) -> None:
        self.store = store
        self.tenant = tenant
        self.keep = keep
        self._model = model
        self._budget = budget
        self._mask = mask
        self._recalled: dict[str, Remembered] = {}

    async def recall(self, identity: str) -> llm.ChatContext | None:
        """The history ``identity``'s new session starts with, or None (nothing kept, or
        the store is unavailable)."""
        try:
            record = await self.store.load(self.tenant, identity)
        except Exception as e:
            MEMORY_OPERATIONS.labels("recall", "error").inc()
            logger.warning("memory not recalled", extra={"error": f"{type(e).__name__}: {e}"})
            return None
        MEMORY_OPERATIONS.labels("recall", "hit" if record else "miss").inc()
        if record is None:
            return None
        self._recalled[identity] = record
        return record.chat_context()

    async def keep_session(self, identity: str, history: llm.ChatContext, summary: str) -> None:
        """Store what to remember of ``identity``'s finished session (``summary``: the
        session's running summary of turns its context window dropped)."""
        # kept (not popped): a switch between voice and text closes a session and goes on
        # with its history, and the final keep still needs the recalled summary
        previous = self._recalled.get(identity)
        earlier = " ".join(s for s in (previous.summary if previous else "", summary) if s)
        # every message once, masked and bounded; the last ``keep`` are kept, the rest fold
        record = remembered_from(history, summary="", keep=1 << 30, mask=self._mask)
        if not record.messages:
            return  # nothing was said: what was remembered stays as it is
        overflow, record.messages = record.messages[: -self.keep], record.messages[-self.keep :]
        if overflow and self._model is not None and self._budget is not None:
            items: list[llm.ChatItem] = [
                llm.ChatMessage(role=m["role"], content=[m["content"]])  # type: ignore[arg-type]
                for m in overflow
            ]
            try:
                earlier = await asyncio.wait_for(
                    summarize(self._model, self._budget, earlier, items), SUMMARY_TIMEOUT_S
                )
            except Exception as e:  # the older messages go; the previous summary stays
                logger.warning("memory summary failed", extra={"error": type(e).__name__})
        record.summary = self._mask(earlier)[:MAX_SUMMARY_CHARS]
        try:
            await self.store.save(self.tenant, identity, record)
        except Exception as e:
            MEMORY_OPERATIONS.labels("keep", "error").inc()
            logger.warning("memory not kept", extra={"error": f"{type(e).__name__}: {e}"})
            return
        MEMORY_OPERATIONS.labels("keep", "ok").inc()
