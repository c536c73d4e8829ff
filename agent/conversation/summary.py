"""Folding the turns a session's context window dropped into a running summary.

The session's own LLM writes it, in a background task: the reply that triggered the cut is
generated without waiting (it goes out with the previous summary, or none), the summary
starts once the conversation has paused for a second (the caller speaking or reading), a
reply that starts meanwhile stops it (``hold``), and the next reply carries the new
summary. A failed or skipped summary loses detail, never a reply. While the LLM's circuit
breaker is not closed no summary is attempted (the endpoint is already in trouble). The
summary's prompt is bounded (``MAX_INPUT_TOKENS``), so on the embedded model, which runs one
generation at a time, a summary costs a second or two of its thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from livekit.agents import llm

from agent.conversation.budget import ContextBudget, ContextWindow
from agent.log import logger

PROMPT = (
    "Summarize the conversation below between a user and an assistant in at most three "
    "short sentences. Keep names, numbers, dates and facts the user gave. Write only the "
    "summary."
)
MAX_SUMMARY_CHARS = 800
# the most recent part of what was dropped is summarized: a short prompt keeps the summary
# a second or two of the embedded model's time (it shares one thread with the replies)
MAX_INPUT_TOKENS = 384
# the summary waits for the conversation to pause (the caller speaking, reading)
IDLE_BEFORE_SUMMARY_S = 1.0


def transcript(items: list[llm.ChatItem]) -> str:
    lines = []
    for item in items:
        if item.type == "message" and item.text_content:
            who = "User" if item.role == "user" else "Assistant"
            lines.append(f"{who}: {item.text_content}")
    return "\n".join(lines)


class Summarizer:
    """Keeps ``window.summary`` up to date with what the window has dropped."""

    def __init__(
        self,
        model: llm.LLM[Any],
        window: ContextWindow,
        *,
        may_call: Callable[[], bool] = lambda: True,
    ) -> None:
        self._llm = model
        self._window = window
        self._may_call = may_call
        self._pending: list[llm.ChatItem] = []
        self._current: list[llm.ChatItem] = []  # being summarized now
        self._task: asyncio.Task[None] | None = None
        self.written = 0  # summaries written (tests and logs)

    def fold(self, dropped: list[llm.ChatItem]) -> None:
        """Summarize ``dropped`` (with what waits from before) once the session is quiet."""
        if not dropped:
            return
        self._pending.extend(dropped)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="conversation.summary")

    def hold(self) -> None:
        """A reply is about to be generated: stop a summary in progress so the reply does
        not queue behind it (its turns wait for the next ``fold``). On a fast back-and-forth
        (typed chat) summaries may thus never run; the turns are then simply dropped."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            self._pending[:0] = self._current
            self._current = []

    async def _run(self) -> None:
        # a reply that follows at once (typed chat) cancels this before the model is busy
        await asyncio.sleep(IDLE_BEFORE_SUMMARY_S)
        while self._pending:
            self._current, self._pending = self._pending, []
            dropped = self._current
            if not self._may_call():
                logger.info("summary skipped: LLM unavailable", extra={"turns": len(dropped)})
                self._current = []
                continue
            try:
                text = await self._summarize(dropped)
            except Exception as e:  # detail is lost, the conversation goes on
                logger.warning("summary failed", extra={"error": f"{type(e).__name__}: {e}"})
                self._current = []
                continue
            self._current = []
            if text:
                self._window.summary = text[:MAX_SUMMARY_CHARS]
                self.written += 1
                logger.debug("conversation summary updated", extra={"turns": len(dropped)})

    async def _summarize(self, dropped: list[llm.ChatItem]) -> str:
        return await summarize(self._llm, self._window.budget, self._window.summary, dropped)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def summarize(
    model: llm.LLM[Any], budget: ContextBudget, earlier: str, items: list[llm.ChatItem]
) -> str:
    """``earlier`` (a summary) and ``items`` folded into one short summary by ``model``."""
    room = budget.context_tokens - budget.reply_tokens - 3 * budget.per_message
    room = min(room - budget.count(PROMPT) - budget.count(earlier), MAX_INPUT_TOKENS)
    text = transcript(items)
    while text and budget.count(text) > room:
        text = text[len(text) // 4 :]  # the most recent part of what was dropped
    head = f"Earlier summary: {earlier}\n\n" if earlier else ""
    ctx = llm.ChatContext()
    ctx.add_message(role="system", content=PROMPT)
    ctx.add_message(role="user", content=f"{head}Conversation:\n{text}")
    parts: list[str] = []
    async with model.chat(chat_ctx=ctx) as stream:
        async for chunk in stream:
            if chunk.delta is not None and chunk.delta.content:
                parts.append(chunk.delta.content)
    return "".join(parts).strip()[:MAX_SUMMARY_CHARS]
