"""Sentence-by-sentence input for a streaming TTS (shared by Piper and the clip cache)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from livekit.agents import tokenize, tts, utils

from .text import speakable


class SentenceSynthesizeStream(tts.SynthesizeStream):
    """A streaming TTS that synthesizes whole sentences as the text pushed into it
    completes them."""

    async def input_sentences(self, tokenizer: tokenize.SentenceTokenizer) -> AsyncIterator[str]:
        """The text pushed into this stream, cut into sentences as they complete (a flush
        ends the pending sentence). Marks the stream started at each sentence, which is
        where livekit-agents measures time to first audio from.

        Text with nothing to pronounce yields one empty sentence, which the engines answer
        with a short pause: livekit-agents fails a stream that had text and produced no
        audio."""
        sentences = tokenizer.stream()
        received = False

        async def forward_input() -> None:
            async for data in self._input_ch:
                if isinstance(data, self._FlushSentinel):
                    sentences.flush()
                else:
                    nonlocal received
                    received = received or bool(data.strip())
                    # the tokenizer's task dies on text it cannot take (a lone surrogate),
                    # which would leave the stream waiting forever
                    sentences.push_text(speakable(data))
            sentences.end_input()

        input_task = asyncio.create_task(forward_input())
        try:
            spoken = False
            async for ev in sentences:
                self._mark_started()
                spoken = True
                yield ev.token
            if received and not spoken:
                self._mark_started()
                yield ""
        finally:
            await utils.aio.cancel_and_wait(input_task)
            await sentences.aclose()
