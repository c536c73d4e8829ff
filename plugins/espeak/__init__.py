"""espeak-ng TTS plugin for LiveKit Agents (the fallback voice)."""

from __future__ import annotations

from livekit.agents import Plugin

from .log import logger
from .tts import EspeakTTS

__all__ = ["EspeakTTS"]
__version__ = "0.1.0"


class EspeakPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__ or "plugins.espeak", logger)


Plugin.register_plugin(EspeakPlugin())
