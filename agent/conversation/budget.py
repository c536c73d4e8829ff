"""A per-session context budget: what is sent to the LLM fits the model's window.

A session's chat history grows with every turn; the model's context does not (the embedded
model has 2 048 tokens). Before each LLM call the session's :class:`ContextWindow` picks
what to send: the instructions (system messages at the head) always, then a running summary
of the turns that no longer fit (when there is one), then as many of the most recent turns
as fit, leaving room for the reply. The full history stays in the session (memory and
transcripts read it); only the request is cut.

The cut is sticky and moves in steps: when the window overflows, the oldest turns are
dropped until the rest fills ``refill`` (60 %) of the room, and stay dropped. Turns then
append behind an unchanged prefix until the window is full again, so llama.cpp's prompt
cache (and a server's prefix cache) keeps working; a cut that moved one turn per call
would re-evaluate the whole prompt every time.

Tokens are counted by the model's tokenizer when it runs in this process, otherwise
estimated from UTF-8 bytes (``bytes / 2.5`` is above the true count for English and for
digit strings alike); each message also costs ``per_message`` tokens of chat template.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from livekit.agents import llm

TokenCounter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper estimate (about 4 bytes per token is typical; digit strings
    and non-Latin scripts run closer to 2.5)."""
    return math.ceil(len(text.encode("utf-8")) / 2.5)


@dataclass(frozen=True, slots=True)
class ContextBudget:
    """The numbers a session's window works with.

    Attributes:
        context_tokens: the model's window (prompt + reply).
        reply_tokens: room kept for the reply (the LLM's ``max_tokens``).
        per_message: chat-template tokens around each message.
        refill: after a cut, the kept turns fill at most this share of the room.
    """

    context_tokens: int
    reply_tokens: int
    count: TokenCounter = estimate_tokens
    per_message: int = 8
    refill: float = 0.6

    def __post_init__(self) -> None:
        if self.context_tokens <= self.reply_tokens + 64:
            raise ValueError("the context must hold the reply and some prompt")
        if not 0.1 <= self.refill <= 1.0:
            raise ValueError("refill must be within [0.1, 1]")

    def tokens(self, item: llm.ChatItem) -> int:
        if item.type == "message":
            return self.count(item.text_content or "") + self.per_message
        return self.count(item.model_dump_json()) + self.per_message  # tool calls, outputs


def _is_head(item: llm.ChatItem) -> bool:
    return item.type == "message" and item.role in ("system", "developer")


class ContextWindow:
    """One session's view of its history for the LLM (see the module docstring)."""

    def __init__(self, budget: ContextBudget, *, summary_prefix: str = "") -> None:
        self.budget = budget
        self.summary = ""  # written by the session's summarizer, off the critical path
        self._summary_prefix = summary_prefix or "Summary of the earlier conversation: "
        self._first_kept: str | None = None  # id of the oldest turn still sent
        self.dropped_total = 0

    def fit(self, ctx: llm.ChatContext) -> tuple[llm.ChatContext, list[llm.ChatItem]]:
        """The context to send, and the turns this call newly dropped (for the summary)."""
        out, newly_dropped, first_kept = self._plan(ctx)
        self._first_kept = first_kept
        self.dropped_total += len(newly_dropped)
        return out, newly_dropped

    def preview(self, ctx: llm.ChatContext) -> llm.ChatContext:
        """What ``fit`` would send for ``ctx``, changing nothing (a prompt-cache warm-up)."""
        return self._plan(ctx)[0]

    def _plan(self, ctx: llm.ChatContext) -> tuple[llm.ChatContext, list[llm.ChatItem], str | None]:
        items = list(ctx.items)
        head_end = 0
        while head_end < len(items) and _is_head(items[head_end]):
            head_end += 1
        head, turns = items[:head_end], items[head_end:]
        b = self.budget
        summary_item = (
            llm.ChatMessage(role="system", content=[self._summary_prefix + self.summary])
            if self.summary
            else None
        )
        fixed = sum(b.tokens(i) for i in head) + (b.tokens(summary_item) if summary_item else 0)
        room = b.context_tokens - b.reply_tokens - fixed

        start = first_kept = self._start_index(turns)
        costs = [b.tokens(i) for i in turns]
        if sum(costs[start:]) > room:
            # overflow: drop the oldest until the rest fills `refill` of the room, and begin
            # at a user turn so the model never opens on its own half of an exchange
            target = room * b.refill
            kept = sum(costs[start:])
            while start < len(turns) - 1 and kept > target:
                kept -= costs[start]
                start += 1
            while start < len(turns) - 1 and not _is_user(turns[start]):
                kept -= costs[start]
                start += 1
        newly_dropped = turns[first_kept:start]
        oldest_kept = turns[start].id if start < len(turns) else None

        kept_items = turns[start:]
        if kept_items and sum(costs[start:]) > room:
            # one turn alone is longer than the window (a pasted essay): send its tail
            kept_items = [*kept_items[:-1], _shortened(kept_items[-1], b, room)]
        out = ctx.copy()
        out.items[:] = [*head, *([summary_item] if summary_item else []), *kept_items]
        return out, newly_dropped, oldest_kept

    def _start_index(self, turns: Sequence[llm.ChatItem]) -> int:
        if self._first_kept is None:
            return 0
        for i, item in enumerate(turns):
            if item.id == self._first_kept:
                return i
        return 0  # the history was replaced (a config message's new context): start over


def _is_user(item: llm.ChatItem) -> bool:
    return item.type == "message" and item.role == "user"


def _shortened(item: llm.ChatItem, budget: ContextBudget, room: int) -> llm.ChatItem:
    if item.type != "message":
        return item
    text = item.text_content or ""
    while text and budget.count(text) + budget.per_message > room:
        text = text[len(text) // 4 :]  # keep the end: the question is usually there
    return llm.ChatMessage(role=item.role, content=[text], id=item.id)
