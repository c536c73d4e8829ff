"""The early first chunk: cut after a few words, the rest by sentences."""

from __future__ import annotations

import asyncio

import numpy as np
from livekit.agents import tokenize

from plugins._common.first_chunk import EarlyFirstChunkTokenizer, find_first_cut

REPLY = "Sure, I can help with that. Your order will arrive on Thursday morning."


def test_cut_points() -> None:
    assert find_first_cut("Sure, I ", 1, 8) == len("Sure,")
    assert find_first_cut("Sure, I can help with that", 3, 8) is None  # no break, < 8 words
    text = "one two three four five six seven eight nine "
    assert text[: find_first_cut(text, 3, 8)] == "one two three four five six seven eight"
    assert find_first_cut("Well I think, that is ", 3, 8) == len("Well I think,")
    assert find_first_cut("unfinished", 1, 1) is None  # a word is complete once followed by space


def test_tokenize_keeps_every_word() -> None:
    tok = EarlyFirstChunkTokenizer(tokenize.blingfire.SentenceTokenizer(), min_words=3)
    parts = tok.tokenize(REPLY)
    assert parts[0] == "Sure, I can help with that." or parts[0].split()[0] == "Sure,"
    assert " ".join(parts).split() == REPLY.split()


async def test_stream_emits_the_first_chunk_before_the_sentence_ends() -> None:
    tok = EarlyFirstChunkTokenizer(tokenize.blingfire.SentenceTokenizer(), min_words=1, max_words=6)
    stream = tok.stream()
    words = REPLY.split(" ")
    stream.push_text(" ".join(words[:4]) + " ")  # "Sure, I can help " — no full stop yet
    first = await asyncio.wait_for(stream.__anext__(), 1.0)
    assert first.token == "Sure,"
    stream.push_text(" ".join(words[4:]))
    stream.end_input()
    rest = [ev.token async for ev in stream]
    await stream.aclose()
    assert " ".join([first.token, *rest]).split() == REPLY.split()


async def test_piper_speaks_before_the_first_sentence_is_complete(piper_tts) -> None:
    from plugins.piper import PiperTTS

    voice = PiperTTS(
        voice_instance=piper_tts._voice,
        use_cuda=False,
        sentence_tokenizer=EarlyFirstChunkTokenizer(
            tokenize.blingfire.SentenceTokenizer(), min_words=1, max_words=6
        ),
    )
    stream = voice.stream()
    stream.push_text("Sure, I can help ")

    async def first_speech() -> None:  # audio of "Sure," while the sentence is unfinished
        async for ev in stream:
            if np.abs(np.frombuffer(ev.frame.data, np.int16)).max() > 1000:
                return

    await asyncio.wait_for(first_speech(), 10.0)
    stream.push_text("with that.")
    stream.end_input()
    async for _ in stream:
        pass
    await stream.aclose()
