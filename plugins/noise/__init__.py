"""Noise filters for LiveKit Agents as ``rtc.FrameProcessor`` (RoomIO's noise_cancellation hook)."""

from __future__ import annotations

from typing import Any, Literal

from livekit.agents import Plugin

from .auto import AutoNoiseFilter
from .base import Framed48kDenoiser
from .deepfilternet import DeepFilterNetFilter
from .log import logger
from .rnnoise import RNNoiseFilter

NoiseFilterName = Literal["off", "auto", "rnnoise", "deepfilternet"]
# what ``create`` builds: RoomIO's ``rtc.FrameProcessor`` with public ``process``/``close``
# for sessions outside RoomIO
NoiseFilter = AutoNoiseFilter | Framed48kDenoiser

__all__ = [
    "AutoNoiseFilter",
    "DeepFilterNetFilter",
    "Framed48kDenoiser",
    "NoiseFilter",
    "NoiseFilterName",
    "RNNoiseFilter",
    "create",
]
__version__ = "0.1.0"


def create(name: str) -> NoiseFilter | None:
    """Build a filter by name; ``"off"`` returns ``None``. Load failures raise."""
    if name == "off":
        return None
    if name == "auto":
        return AutoNoiseFilter(DeepFilterNetFilter, on_switch=_count_switch)
    if name == "rnnoise":
        return RNNoiseFilter()
    if name == "deepfilternet":
        return DeepFilterNetFilter()
    raise ValueError(f"unknown noise filter {name!r}: choose off, auto, rnnoise or deepfilternet")


# set by the worker (agent/obs/metrics.py) to count switches; plugins import no metrics
SWITCH_COUNTER: Any = None


def _count_switch(on: bool, floor: float, snr: float) -> None:
    if SWITCH_COUNTER is not None:
        SWITCH_COUNTER.labels("on" if on else "off").inc()


class NoisePlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__ or "plugins.noise", logger)

    def download_files(self) -> None:
        # both engines ship in wheels; constructing them proves the native parts load
        RNNoiseFilter().close()
        DeepFilterNetFilter().close()


Plugin.register_plugin(NoisePlugin())
