"""``download-files``: put every model asset the engines need under ``CACHE_PATH``."""

from __future__ import annotations

import logging
from pathlib import Path

from cache.tts import CachedTTS

from .settings import Settings

logger = logging.getLogger("agent.assets")


def download_all(cache_path: Path) -> list[Path]:
    """Fetch and verify every asset; check that the packaged ones import and load."""
    from plugins import llama, smart_turn
    from plugins.noise import DeepFilterNetFilter, RNNoiseFilter
    from plugins.piper import packaged_voice
    from plugins.whisper import packaged_tiny_en

    placed = [smart_turn.download_files(cache_path), llama.download_files(cache_path)]
    model_dir = packaged_tiny_en()
    voice, _ = packaged_voice()
    RNNoiseFilter().close()
    DeepFilterNetFilter().close()
    for path in placed:
        logger.info("asset ready: %s", path)
    logger.info("packaged: whisper %s, piper %s", model_dir, voice)
    return placed


async def prewarm_clips(settings: Settings) -> int:
    """Synthesize the configured prewarm phrases into the clip cache (only the missing ones).

    Run by ``download-files`` (so an image ships with its clips) and in the background by
    the first job of each worker process (a no-op once they are cached)."""
    from plugins.piper import PiperTTS

    from .engines import cached, open_clip_store

    phrases = settings.prewarm_phrases()
    store = open_clip_store(settings)
    if not phrases or store is None:
        return 0
    voice = cached(
        PiperTTS(model_path=settings.tts_voice or None, speed=settings.tts_speed, use_cuda=False),
        store,
    )
    assert isinstance(voice, CachedTTS)
    count = await voice.fill(phrases)
    logger.info("clip cache prewarmed: %d of %d phrases synthesized", count, len(phrases))
    return count
