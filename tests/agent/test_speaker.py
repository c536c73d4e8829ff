"""``/v1/speak``'s synthesis: predicted and capped audio, fair turns across tenants, no
thread per speed (findings 2 and 8), and clips kept per tenant (finding 5)."""

from __future__ import annotations

import asyncio
import stat
import threading
from pathlib import Path

import pytest

from agent.http.speaker import AudioTooLong, FairTurns, Speaker, units
from agent.models.engines import Engines
from agent.settings import Settings
from cache.store import ClipStore
from cache.tts import CachedTTS
from plugins.piper.tts import MAX_SYNTHESIS_CHARS

DIGITS = " ".join(f"{1000 + (i * 7919) % 9000}" for i in range(400))[:2000]


@pytest.fixture
def speech_engines(tmp_path: Path, piper_tts) -> Engines:
    settings = Settings(cache_path=tmp_path, cache_prewarm="Welcome to the hotel.")
    store = ClipStore(tmp_path / "clips", max_bytes=1 << 28)
    return Engines(settings, piper=piper_tts, clip_store=store)


async def test_fair_turns_alternate_between_tenants() -> None:
    turns = FairTurns()
    order: list[str] = []

    async def unit(tenant: str, i: int) -> None:
        async with turns.turn(tenant):
            order.append(f"{tenant}{i}")
            await asyncio.sleep(0.01)

    async def request(tenant: str, n: int) -> None:
        for i in range(n):
            await unit(tenant, i)

    long = asyncio.create_task(request("a", 6))
    await asyncio.sleep(0.015)
    await asyncio.gather(request("b", 2), long)
    # b's units interleave with a's instead of waiting for all six
    assert order.index("b1") < order.index("a5"), order
    assert sorted(order) == sorted([f"a{i}" for i in range(6)] + ["b0", "b1"])


async def test_fair_turns_survive_cancelled_waiters() -> None:
    turns = FairTurns()
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with turns.turn("a"):
            held.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await held.wait()
    waiter = asyncio.create_task(turns.turn("b").__aenter__())
    await asyncio.sleep(0)
    waiter.cancel()
    release.set()
    await task
    async with turns.turn("c"):  # not stuck: the cancelled waiter left no hole
        pass


async def test_too_long_text_is_refused_before_synthesis(speech_engines: Engines) -> None:
    speaker = Speaker(speech_engines, max_audio_s=60)
    with pytest.raises(AudioTooLong) as info:
        await speaker.prepare(DIGITS, 0.5)
    assert info.value.predicted_s > 300
    assert speech_engines.clip_store is not None
    assert speech_engines.clip_store.stats().misses == 0  # nothing was synthesized
    text = "Hello there, this is the front desk. How may I help you this evening?"
    assert await speaker.prepare(text, None) == [
        "Hello there, this is the front desk.",
        "How may I help you this evening?",
    ]
    assert all(len(u) <= MAX_SYNTHESIS_CHARS for u in units(DIGITS, speaker._tokenizer))


async def test_audio_past_the_cap_is_cut(speech_engines: Engines) -> None:
    speaker = Speaker(speech_engines, max_audio_s=1.0)
    text = "This sentence is quite a bit longer than one second of speech, surely."
    pcm = b"".join([c async for c in speaker.stream("acme", [text], None)])
    assert len(pcm) == 2 * speaker.sample_rate  # exactly the cap


async def test_speeds_share_the_voice_thread(speech_engines: Engines) -> None:
    speaker = Speaker(speech_engines, max_audio_s=60)
    async for _ in speaker.stream("acme", ["Warm."], 1.3):
        pass
    before = threading.active_count()
    for i in range(30):
        async for _ in speaker.stream("acme", [f"Speed {i}."], 0.5 + i * 0.05):
            pass
    assert threading.active_count() - before < 3


async def test_clips_are_per_tenant_and_private(speech_engines: Engines) -> None:
    """Finding 5: tenant B's lookup hit the clip of what the agent said to tenant A."""
    store = speech_engines.clip_store
    assert store is not None
    speaker = Speaker(speech_engines, max_audio_s=60)
    said_to_a = "Your account number is four four seven one."
    async for _ in speaker.stream("acme", [said_to_a], None):
        pass
    hits = store.stats().hits
    async for _ in speaker.stream("globex", [said_to_a], None):
        pass
    assert store.stats().hits == hits  # a miss for globex
    async for _ in speaker.stream("acme", [said_to_a], None):
        pass
    assert store.stats().hits == hits + 1  # acme's own clip
    # the operator's prewarm phrases stay shared
    voice_a, voice_b = (
        speech_engines.voice(None, namespace="acme"),
        speech_engines.voice(None, namespace="globex"),
    )
    cached_a = voice_a if isinstance(voice_a, CachedTTS) else voice_a.primary
    cached_b = voice_b if isinstance(voice_b, CachedTTS) else voice_b.primary
    assert cached_a.key("Welcome to the hotel.") == cached_b.key("Welcome to the hotel.")
    assert cached_a.key(said_to_a) != cached_b.key(said_to_a)
    # files: owner only
    clips = list(store.root.glob("??/*.clip"))
    assert clips
    for path in clips:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
