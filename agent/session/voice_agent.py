"""The Agent the VoiceManager runs: livekit's Agent plus a local backchannel rule.

While the agent is speaking, a user "yeah", "uh-huh" or "okay" is listening, not taking the
turn. The VAD still pauses the agent's audio at once (that keeps barge-in fast); this agent
then drops transcripts made only of backchannel words while a reply is in progress, so no
user turn is committed, and livekit-agents treats the pause as a false interruption and
resumes the reply after ``false_interruption_timeout``. A real interruption ("wait, stop")
has other words and goes through.

Every LLM call goes through the session's context window (agent/conversation/budget.py):
the request fits the model's context, and the turns it no longer holds are folded into a
running summary in the background.

While the user speaks, each interim transcript warms an embedded model's prompt cache with
the history and the words so far (``LlamaLLM.warm``), so the reply at the end of the turn
evaluates only the last words instead of the whole new exchange: on 2 CPU cores that is
most of the model's time to first token.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Protocol, runtime_checkable

from livekit import rtc
from livekit.agents import Agent, llm, stt
from livekit.agents.types import FlushSentinel
from livekit.agents.voice import ModelSettings

from agent.conversation.budget import ContextBudget, ContextWindow
from agent.conversation.summary import Summarizer
from agent.log import logger
from agent.models.resilience import ResilientLLM
from agent.obs.metrics import BACKCHANNELS_IGNORED, CONTEXT_TURNS_DROPPED
from plugins.llama.llm import text_messages

_WORDS = re.compile(r"[a-z]+(?:-[a-z]+)?")


@runtime_checkable
class WarmableLLM(Protocol):
    """An LLM whose prompt cache can be filled ahead of a request (plugins/llama)."""

    async def warm(self, messages: list[dict[str, str]]) -> bool: ...


def warmable(model: object) -> WarmableLLM | None:
    """The model under the session's LLM wrappers, if it takes warm-ups."""
    while isinstance(model, ResilientLLM):
        model = model.inner
    return model if isinstance(model, WarmableLLM) else None


class BackchannelRule:
    def __init__(self, phrases: Iterable[str]) -> None:
        self._words: set[str] = set()
        for phrase in phrases:
            self._words.update(_WORDS.findall(phrase.lower()))

    def is_backchannel(self, text: str) -> bool:
        """Only backchannel words (and at least one word)."""
        words = _WORDS.findall(text.lower())
        return bool(words) and len(words) <= 4 and all(w in self._words for w in words)


class VoiceAgent(Agent):
    def __init__(
        self,
        *,
        instructions: str,
        chat_ctx: llm.ChatContext | None = None,
        backchannels: BackchannelRule | None = None,
        budget: ContextBudget | None = None,
    ) -> None:
        super().__init__(instructions=instructions, chat_ctx=chat_ctx)
        self._backchannels = backchannels
        self.context_window = ContextWindow(budget) if budget is not None else None
        self.summarizer: Summarizer | None = None
        self._warming: asyncio.Task[bool] | None = None

    async def llm_node(
        self, chat_ctx: llm.ChatContext, tools: list[llm.Tool], model_settings: ModelSettings
    ) -> AsyncIterator[llm.ChatChunk | str | FlushSentinel]:
        dropped: list[llm.ChatItem] = []
        if self.summarizer is not None:
            self.summarizer.hold()  # the caller's answer first
        if self.context_window is not None:
            chat_ctx, dropped = self.context_window.fit(chat_ctx)
            CONTEXT_TURNS_DROPPED.inc(len(dropped))
        try:
            async for chunk in Agent.default.llm_node(self, chat_ctx, tools, model_settings):
                yield chunk
        finally:
            # after the reply: on the embedded model one generation runs at a time, and
            # the summary must not stand between the caller and this answer
            if dropped and self.context_window is not None:
                self._summaries(self.context_window).fold(dropped)

    def _summaries(self, window: ContextWindow) -> Summarizer:
        if self.summarizer is None:
            model = self.session.llm
            assert isinstance(model, llm.LLM)
            if isinstance(model, ResilientLLM):  # the summary never speaks the apology
                breaker = model.breaker
                self.summarizer = Summarizer(
                    model.inner, window, may_call=lambda: breaker.state == "closed"
                )
            else:
                self.summarizer = Summarizer(model, window)
        return self.summarizer

    async def on_exit(self) -> None:
        if self.summarizer is not None:
            await self.summarizer.aclose()

    def _agent_is_replying(self) -> bool:
        speech = self.session.current_speech
        return speech is not None and not speech.done()

    async def stt_node(
        self, audio: AsyncIterable[rtc.AudioFrame], model_settings: ModelSettings
    ) -> AsyncIterator[stt.SpeechEvent]:
        async for ev in Agent.default.stt_node(self, audio, model_settings):
            if (
                self._backchannels is not None
                and ev.type
                in (
                    stt.SpeechEventType.INTERIM_TRANSCRIPT,
                    stt.SpeechEventType.PREFLIGHT_TRANSCRIPT,
                    stt.SpeechEventType.FINAL_TRANSCRIPT,
                )
                and ev.alternatives
                and self._backchannels.is_backchannel(ev.alternatives[0].text)
                and self._agent_is_replying()
            ):
                if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                    BACKCHANNELS_IGNORED.inc()
                    logger.debug("backchannel ignored while the agent speaks")
                continue
            if ev.type == stt.SpeechEventType.INTERIM_TRANSCRIPT and ev.alternatives:
                self._warm_prompt(ev.alternatives[0].text)
            yield ev

    def _warm_prompt(self, words: str) -> None:
        """Warm the model's cache with the prompt the reply to ``words`` would start with."""
        if not words.strip() or self._agent_is_replying():
            return  # a reply's own generation needs the model now
        if self._warming is not None and not self._warming.done():
            return
        model = warmable(self.session.llm)
        if model is None:
            return
        ctx = self.chat_ctx.copy()
        ctx.add_message(role="user", content=words)
        if self.context_window is not None:
            # the prompt the reply will send (llm_node fits it the same way): a warm-up of
            # turns the window no longer sends would push the cached ones out
            ctx = self.context_window.preview(ctx)
        self._warming = asyncio.create_task(model.warm(text_messages(ctx)))
