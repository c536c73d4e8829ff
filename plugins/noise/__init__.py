"""Noise filters for LiveKit Agents as ``rtc.FrameProcessor`` (RoomIO's noise_cancellation hook)."""

from __future__ import annotations

from typing import Literal

from livekit.agents import Plugin

from .base import Framed48kDenoiser
from .deepfilternet import DeepFilterNetFilter
from .log import logger
from .rnnoise import RNNoiseFilter

NoiseFilterName = Literal["off", "rnnoise", "deepfilternet"]

__all__ = ["DeepFilterNetFilter", "Framed48kDenoiser", "NoiseFilterName", "RNNoiseFilter", "create"]
__version__ = "0.1.0"


def create(name: NoiseFilterName) -> Framed48kDenoiser | None:
    """Build a filter by name; ``"off"`` returns ``None``. Load failures raise."""
    if name == "off":
        return None
    if name == "rnnoise":
        return RNNoiseFilter()
    if name == "deepfilternet":
        return DeepFilterNetFilter()
    raise ValueError(f"unknown noise filter {name!r}: choose off, rnnoise or deepfilternet")


class NoisePlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__ or "plugins.noise", logger)

    def download_files(self) -> None:
        # both engines ship in wheels; constructing them proves the native parts load
        RNNoiseFilter().close()
        DeepFilterNetFilter().close()


Plugin.register_plugin(NoisePlugin())
