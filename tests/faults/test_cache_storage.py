"""CACHE_PATH on a real small filesystem (tmpfs mounted by the test): full, then read-only.
The voice keeps speaking; the cache only stops storing, and says so in its counters."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.models.engines import open_clip_store
from agent.settings import Settings
from cache.clip_file import Clip
from cache.store import ClipStore
from cache.tts import CachedTTS

SENTENCES = [
    "The first train leaves the station at six in the morning.",
    "Breakfast is served in the hall on the ground floor until ten.",
    "Please leave your keys at the front desk when you go out.",
]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "cache"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def speak(voice: CachedTTS, text: str) -> np.ndarray:
    async with voice.synthesize(text) as stream:
        pcm = np.concatenate([np.frombuffer(ev.frame.data, np.int16) async for ev in stream])
    await voice.wait_stored()
    return pcm


async def test_a_full_cache_disk_loses_no_audio(small_fs: Path, piper_tts) -> None:
    store = ClipStore(small_fs / "clips", max_bytes=1 << 30)  # the cap is not what stops it
    voice = CachedTTS(piper_tts, store)
    for text in SENTENCES:  # each clip is ~150 KB: none fits in 96 KB
        pcm = await speak(voice, text)
        assert pcm.size > 22050 and np.abs(pcm).max() > 1000  # spoken all the same
    stats = store.stats()
    assert stats.write_errors >= len(SENTENCES) - 1 and stats.clips == 0
    assert not list((small_fs / "clips" / "tmp").iterdir())  # no partial file left behind


def test_a_read_only_cache_path_serves_hits_and_stores_nothing(small_fs: Path, piper_tts) -> None:
    import asyncio

    from agent.models.engines import Engines

    store = ClipStore(small_fs / "clips", max_bytes=1 << 20)
    store.put("ab" * 32, Clip(b"\x01\x00" * 10, 16000, 1))
    store.close()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    settings = Settings(cache_path=small_fs)
    # the worker starts; stored clips are still served
    ro_store = open_clip_store(settings)
    assert ro_store is not None and ro_store.get("ab" * 32) is not None
    engines = Engines(settings, piper=piper_tts, clip_store=ro_store)

    async def synth() -> np.ndarray:
        async with engines.tts.synthesize(SENTENCES[0]) as stream:
            return np.concatenate([np.frombuffer(ev.frame.data, np.int16) async for ev in stream])

    pcm = asyncio.run(synth())
    assert pcm.size > 22050 and np.abs(pcm).max() > 1000  # the voice works
    voice = engines.tts
    assert isinstance(voice, CachedTTS) and not ro_store.contains(voice.key(SENTENCES[0]))
