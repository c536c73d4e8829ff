"""CachedTTS around the real Piper voice."""

from __future__ import annotations

from pathlib import Path

import pytest

from cache.store import ClipStore
from cache.tts import CachedTTS


@pytest.fixture
def store(tmp_path: Path) -> ClipStore:
    return ClipStore(tmp_path / "clips", max_bytes=64 << 20)


async def synth(voice: CachedTTS, text: str) -> bytes:
    async with voice.synthesize(text) as stream:
        audio = b"".join([bytes(ev.frame.data) async for ev in stream])
    await voice.wait_stored()
    return audio


async def streamed(voice: CachedTTS, text: str) -> bytes:
    stream = voice.stream()
    for word in text.split(" "):
        stream.push_text(word + " ")
    stream.end_input()
    audio = b"".join([bytes(ev.frame.data) async for ev in stream])
    await stream.aclose()
    await voice.wait_stored()
    return audio


async def test_hit_after_miss_is_byte_identical(piper_tts, store: ClipStore) -> None:
    voice = CachedTTS(piper_tts, store)
    text = "Your table for two is booked for seven o'clock."
    first = await synth(voice, text)
    second = await synth(voice, text)
    assert [lk.hit for lk in voice.lookups] == [False, True]
    assert first == second and len(first) > 22050  # more than half a second of audio
    # Piper samples noise: had it synthesized again, the bytes would differ
    fresh = b"".join([bytes(ev.frame.data) async for ev in piper_tts.synthesize(text)])
    assert fresh != first
    # the streaming path reads the same entry (its emitter frames the tail differently:
    # the chunked path pads the last 10 ms frame)
    via_stream = await streamed(voice, text)
    assert voice.lookups[-1].hit
    assert first.startswith(via_stream) and len(first) - len(via_stream) <= 2 * 220


async def test_changed_speed_or_voice_config_misses(piper_tts, store: ClipStore) -> None:
    text = "Thank you for calling."
    normal = CachedTTS(piper_tts, store)
    faster = CachedTTS(piper_tts.with_speed(1.3), store)
    other_voice = CachedTTS(piper_tts, store, config={**normal.config, "voice_sha256": "other"})
    await synth(normal, text)
    await synth(faster, text)
    await synth(other_voice, text)
    assert [v.lookups[0].hit for v in (normal, faster, other_voice)] == [False, False, False]
    assert len({normal.config_hash, faster.config_hash, other_voice.config_hash}) == 3
    assert store.stats().clips == 3


async def test_long_reply_reuses_cached_sentences(piper_tts, store: ClipStore) -> None:
    voice = CachedTTS(piper_tts, store)
    await synth(voice, "Good morning and welcome to the hotel.")
    voice.lookups.clear()
    await synth(voice, "Good morning and welcome to the hotel. How can I help you today?")
    assert [(lk.text, lk.hit) for lk in voice.lookups] == [
        ("Good morning and welcome to the hotel.", True),
        ("How can I help you today?", False),
    ]


async def test_an_interrupted_synthesis_is_not_cached(piper_tts, store: ClipStore) -> None:
    voice = CachedTTS(piper_tts, store)
    text = (
        "This sentence is long enough that its synthesis takes a while, and the listener "
        "interrupts it long before the voice reaches the end of all these words."
    )
    stream = voice.synthesize(text)
    async for _ in stream:
        break  # the first audio arrived; the session is interrupted here
    await stream.aclose()
    await voice.wait_stored()
    assert not store.contains(voice.key(text))
    await synth(voice, text)  # the next complete synthesis is stored
    assert store.contains(voice.key(text))


async def test_a_corrupted_clip_is_resynthesized_and_replaced(piper_tts, store: ClipStore) -> None:
    voice = CachedTTS(piper_tts, store)
    text = "Please hold the line."
    await synth(voice, text)
    path = store.path(voice.key(text))
    path.write_bytes(path.read_bytes()[:-10])  # truncated on disk
    audio = await synth(voice, text)
    assert [lk.hit for lk in voice.lookups] == [False, False]
    assert store.stats().corrupt == 1
    assert await synth(voice, text) == audio and voice.lookups[-1].hit


async def test_fill_synthesizes_only_missing_phrases(piper_tts, store: ClipStore) -> None:
    voice = CachedTTS(piper_tts, store)
    assert await voice.fill(["Hello!", "One moment please."]) == 2
    assert await voice.fill(["Hello!", "One moment please.", "Goodbye."]) == 1
    assert store.stats().clips == 3


async def test_a_changed_speed_on_the_voice_gives_new_keys(tmp_path, piper_tts) -> None:
    """The key was computed once: after ``update_options(speed=...)`` on the voice the cache
    kept serving clips of the old speed."""
    from plugins.piper import PiperTTS

    voice = PiperTTS(voice_instance=piper_tts._voice, use_cuda=False)
    cached = CachedTTS(voice, ClipStore(tmp_path / "clips", max_bytes=1 << 26))
    sentence = "The lobby is on the ground floor."

    async def seconds() -> float:
        async with cached.synthesize(sentence) as stream:
            frames = [ev.frame async for ev in stream]
        await cached.wait_stored()
        return sum(f.samples_per_channel for f in frames) / frames[0].sample_rate

    normal = await seconds()
    key = cached.key(sentence)
    voice.update_options(speed=2.0)
    assert cached.key(sentence) != key
    fast = await seconds()
    assert fast < normal * 0.75, (normal, fast)  # synthesized at the new speed, not the old clip
