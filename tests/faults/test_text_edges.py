"""Odd text through the sessions' voice chain (clip cache, Piper, espeak-ng fallback).

Every text is spoken or cleanly skipped, never raises, never hangs the stream, and is cached
under a key that the next identical request hits. A NUL byte used to fail both voices, and a
lone surrogate (valid in JSON: ``"\\ud800"``) killed the sentence tokenizer's task, leaving
the stream waiting forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.models.engines import Engines
from agent.session.factory import clip_cache_of
from agent.settings import Settings
from plugins._common.text import speakable

LONG = " ".join(
    f"Item {i} on the list is a {c} box with {i % 7 + 2} apples inside."
    for i, c in zip(range(400), ["red", "green", "blue", "yellow"] * 100, strict=False)
)[:3_000]

TEXTS = {
    "emoji": "Great news 👍 see you at five 🎉! 👨‍👩‍👧",
    "emoji_only": "👍🎉🔥",
    "rtl": "مرحبا بالعالم. שלום עולם. Hello again.",
    "control": "Hello\x00\x07 world\x1b[31m red\x1b[0m.\r\n\tTab\x7f end.",
    "markup": "<speak><break time='3s'/>Hi</speak> **bold** `rm -rf /` {{name}} &amp; <b>x</b>",
    "format_chars": "Zero\u200bwidth\u200e marks\ufeff and e\u0301 combining.",
    "surrogate": "A lone \ud800 surrogate, and \udfff another.",
    "only_controls": "\x00\x01\x02\x1b",
    "three_thousand": LONG,
}


@pytest.fixture(scope="module")
def voice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    settings = Settings(cache_path=Path(tmp_path_factory.mktemp("clips")))
    chain = Engines(settings).voice(None)
    switches: list[Any] = []
    chain.on("tts_availability_changed", switches.append)
    yield chain
    # odd text never made the chain give up on its primary voice for the fallback
    assert switches == []


async def speak_all(voice: Any, text: str) -> tuple[bytes, int]:
    stream = voice.stream()
    stream.push_text(text)
    stream.end_input()
    chunks = []
    async with asyncio.timeout(120):  # a stream that never ends is the failure here
        async for ev in stream:
            chunks.append(bytes(ev.frame.data))
    await stream.aclose()
    return b"".join(chunks), voice.sample_rate


def test_speakable_keeps_words_and_drops_what_engines_cannot_take() -> None:
    assert speakable("a\x00b\x1b[31mc") == "a b [31mc"
    assert speakable("x\ud800y") == "x y"
    assert speakable("e\u0301") == "é"  # NFC
    assert speakable("👨‍👩‍👧") == "👨‍👩‍👧"  # the zero-width joiner holds the family together
    assert speakable("zero\u200bwidth\ufeff") == "zerowidth"
    assert speakable("שלום <b>עולם</b>\n") == "שלום <b>עולם</b>\n"
    speakable("".join(chr(c) for c in range(0, 0x11000, 7))).encode("utf-8")  # always encodable


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TEXTS))
async def test_odd_text_is_spoken_and_cached(voice: Any, name: str) -> None:
    text = TEXTS[name]
    pcm, rate = await speak_all(voice, text)
    seconds = len(pcm) / 2 / rate
    if name == "only_controls":
        assert seconds < 0.2  # nothing to say: a short pause, and no error
    else:
        assert seconds > 0.3, name
    if name == "three_thousand":
        assert seconds > 100  # about 3 minutes of speech, every sentence of it

    cache = clip_cache_of(voice)
    assert cache is not None
    await cache.wait_stored()  # clips are written behind the audio
    cache.lookups.clear()
    again, _ = await speak_all(voice, text)
    # the same clips, from disk (a miss is framed as it streams, so compare lengths)
    assert abs(len(again) - len(pcm)) <= 0.05 * len(pcm) + 2 * rate
    assert all(lookup.hit for lookup in cache.lookups), [
        lookup for lookup in cache.lookups if not lookup.hit
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["surrogate", "control", "only_controls", "markup"])
async def test_odd_text_through_synthesize_as_the_http_api_calls_it(voice: Any, name: str) -> None:
    chunks = []
    async with asyncio.timeout(60), voice.synthesize(TEXTS[name]) as stream:
        async for ev in stream:
            chunks.append(bytes(ev.frame.data))
    assert sum(map(len, chunks)) > 0  # at least the short pause, never an error
