"""``download-files``: put every model asset the engines need under ``CACHE_PATH``."""

from __future__ import annotations

import logging
from pathlib import Path

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
