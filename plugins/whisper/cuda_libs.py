"""Make CUDA 12 cuBLAS loadable for CTranslate2 without touching ``LD_LIBRARY_PATH``.

CTranslate2's CUDA build opens ``libcublas.so.12`` by name the first time it multiplies on
the GPU. pip's ``nvidia-cublas-cu12`` wheel (the ``gpu`` extra) puts that library under
``site-packages/nvidia/cublas/lib``, where the dynamic loader never looks, so a GPU host with
a correct install still failed at the first decode. Loading the wheel's copy once, by full
path and globally, makes the later by-name open find it: the loader matches an already
loaded library by its soname.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

from .._common.errors import ModelLoadError

CUBLAS = "libcublas.so.12"
# libcublas needs its Lt half; loading it first keeps the lookup inside the wheel's folder
CUBLAS_FILES = ("libcublasLt.so.12", CUBLAS)

_loaded: str | None = None


def wheel_cublas_dir(search: list[str] | None = None) -> Path | None:
    """The ``nvidia/cublas/lib`` folder of an installed nvidia-cublas-cu12 wheel, if any."""
    for entry in search if search is not None else sys.path:
        folder = Path(entry or ".") / "nvidia" / "cublas" / "lib"
        if all((folder / name).is_file() for name in CUBLAS_FILES):
            return folder
    return None


def ensure_cublas(search: list[str] | None = None) -> str:
    """Load cuBLAS 12 once; return where it came from. Raises ``ModelLoadError`` with the fix
    when neither the wheel nor the system loader path has it, before any model is loaded."""
    global _loaded
    if _loaded is not None:
        return _loaded
    folder = wheel_cublas_dir(search)
    try:
        if folder is not None:
            for name in CUBLAS_FILES:
                ctypes.CDLL(str(folder / name), mode=ctypes.RTLD_GLOBAL)
            _loaded = str(folder)
        else:  # a CUDA 12 base image or LD_LIBRARY_PATH provides it
            ctypes.CDLL(CUBLAS, mode=ctypes.RTLD_GLOBAL)
            _loaded = "system"
    except OSError as e:
        raise ModelLoadError(
            f"CUDA speech-to-text needs {CUBLAS} (CTranslate2 is built against CUDA 12): "
            "install the gpu extra (`pip install 'local-voice-agent[gpu]'`, which brings "
            "nvidia-cublas-cu12) or put the library on LD_LIBRARY_PATH; "
            f"STT_DEVICE=cpu runs without it ({e})"
        ) from e
    return _loaded
