"""RNNoise (weights compiled into pyrnnoise's ``librnnoise.so``), frame level at 48 kHz.

The package's high-level chunk API returned silence at 16 kHz in our checks, so the
frame-level C call is used directly through the library handle pyrnnoise already loads.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from .._common.audio import Float32Array
from .._common.errors import ModelLoadError
from .base import ENGINE_FRAME, Framed48kDenoiser

_FLOAT_P = ctypes.POINTER(ctypes.c_float)


def _library() -> Any:
    try:
        from pyrnnoise import rnnoise as native
    except (ImportError, OSError) as e:
        raise ModelLoadError(f"RNNoise library could not be loaded: {e}") from e
    if int(native.FRAME_SIZE) != ENGINE_FRAME:
        raise ModelLoadError(f"RNNoise frame size is {native.FRAME_SIZE}, expected {ENGINE_FRAME}")
    return native.lib


class RNNoiseFilter(Framed48kDenoiser):
    """RNNoise noise suppression as an ``rtc.FrameProcessor``; any rate, any channel count."""

    name = "rnnoise"

    def __init__(self, *, enabled: bool = True) -> None:
        self._lib = _library()
        super().__init__(enabled=enabled)
        # fail now, not on the first frame of a call
        self._free_state(self._new_state())

    def _new_state(self) -> Any:
        state = self._lib.rnnoise_create(None)
        if not state:
            raise ModelLoadError("rnnoise_create returned NULL")
        return state

    def _free_state(self, state: Any) -> None:
        self._lib.rnnoise_destroy(state)

    def _denoise(self, state: Any, frame48k: Float32Array) -> Float32Array:
        # RNNoise works on float samples in int16 range
        inp = np.ascontiguousarray(frame48k * 32768.0, dtype=np.float32)
        out = np.empty(ENGINE_FRAME, dtype=np.float32)
        self._lib.rnnoise_process_frame(
            state, out.ctypes.data_as(_FLOAT_P), inp.ctypes.data_as(_FLOAT_P)
        )
        return out / 32768.0
