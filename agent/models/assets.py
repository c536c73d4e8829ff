"""``download-files``: put every model asset the engines need under ``CACHE_PATH``."""

from __future__ import annotations

import logging
from pathlib import Path

from agent.settings import Settings
from cache.tts import CachedTTS

logger = logging.getLogger("agent.models.assets")


def download_all(cache_path: Path) -> list[Path]:
    """Fetch and verify every asset; check that the packaged ones import and load."""
    from plugins import llama, smart_turn
    from plugins._common.errors import ModelLoadError
    from plugins.noise import DeepFilterNetFilter, RNNoiseFilter
    from plugins.piper import packaged_voice
    from plugins.whisper import packaged_tiny_en
    from plugins.whisper.models import place_packaged_base

    placed = [smart_turn.download_files(cache_path), llama.download_files(cache_path)]
    try:  # the multilingual extra: STT_MODEL=base
        placed.append(place_packaged_base(cache_path / "models" / "whisper"))
    except ModelLoadError as e:
        logger.info("no multilingual STT model: %s", e)
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

    Run by ``download-files`` (so an image ships with its clips); job processes do the same
    in the background (``Engines.start_prewarm``). Both go through ``Engines.tts``, so the
    phrases are cut into exactly the chunks a session will look up."""
    from agent.models.engines import Engines

    phrases = settings.prewarm_phrases()
    engines = Engines(settings)
    voice = engines.tts if phrases and engines.clip_store is not None else None
    if not isinstance(voice, CachedTTS):
        return 0
    count = await voice.fill(phrases)
    logger.info("clip cache prewarmed: %d of %d phrases synthesized", count, len(phrases))
    return count
