"""Sentence-by-sentence input for a streaming TTS (shared by Piper and the clip cache)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from livekit.agents import tokenize, tts, utils


async def input_sentences(
    stream: tts.SynthesizeStream, tokenizer: tokenize.SentenceTokenizer
) -> AsyncIterator[str]:
    """The text pushed into ``stream``, cut into sentences as they complete (a flush ends
    the pending sentence). Marks the stream started at each sentence, which is where
    livekit-agents measures time to first audio from."""
    sentences = tokenizer.stream()

    async def forward_input() -> None:
        async for data in stream._input_ch:
            if isinstance(data, stream._FlushSentinel):
                sentences.flush()
            else:
                sentences.push_text(data)
        sentences.end_input()

    input_task = asyncio.create_task(forward_input())
    try:
        async for ev in sentences:
            stream._mark_started()
            yield ev.token
    finally:
        await utils.aio.cancel_and_wait(input_task)
        await sentences.aclose()
