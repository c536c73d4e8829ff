"""Smart Turn v3 audio end-of-turn detection plugin for LiveKit Agents."""

from __future__ import annotations

from pathlib import Path

from livekit.agents import Plugin

from .._common.assets import DEFAULT_CACHE_DIR, fetch
from .batcher import TurnBatcher
from .detector import HybridTurnOptions, SmartTurnDetector, SmartTurnStream
from .log import logger
from .model import SMART_TURN_V3_2, SmartTurnModel

__all__ = [
    "HybridTurnOptions",
    "SMART_TURN_V3_2",
    "SmartTurnDetector",
    "SmartTurnModel",
    "SmartTurnStream",
    "TurnBatcher",
    "download_files",
]
__version__ = "0.1.0"


def download_files(cache_dir: Path) -> Path:
    """Extract the v3.2 model from its wheel into ``cache_dir/models`` (idempotent)."""
    return fetch(SMART_TURN_V3_2, cache_dir)


class SmartTurnPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__ or "plugins.smart_turn", logger)

    def download_files(self) -> None:
        download_files(DEFAULT_CACHE_DIR)


Plugin.register_plugin(SmartTurnPlugin())
