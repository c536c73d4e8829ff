"""The CUDA paths on a host without them: each asks for what is missing, by name, before any
model loads (the GPU machine's figures are in docs/benchmarks.md)."""

from __future__ import annotations

import ctypes.util
from pathlib import Path

import pytest

from plugins._common.errors import ModelLoadError
from plugins.whisper import cuda_libs


def wheel_layout(root: Path, content: bytes = b"") -> Path:
    lib = root / "nvidia" / "cublas" / "lib"
    lib.mkdir(parents=True)
    for name in cuda_libs.CUBLAS_FILES:
        (lib / name).write_bytes(content)
    return lib


def test_the_cublas_wheel_folder_is_found_on_the_search_path(tmp_path: Path) -> None:
    empty, site = tmp_path / "empty", tmp_path / "site"
    empty.mkdir()
    lib = wheel_layout(site)
    assert cuda_libs.wheel_cublas_dir([str(empty), str(site)]) == lib
    (lib / "libcublasLt.so.12").unlink()  # half a wheel is no wheel
    assert cuda_libs.wheel_cublas_dir([str(empty), str(site)]) is None


def test_a_broken_cublas_install_is_a_clear_load_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cuda_libs, "_loaded", None)
    wheel_layout(tmp_path, b"not a shared library")
    with pytest.raises(ModelLoadError, match=r"libcublas\.so\.12.*gpu extra"):
        cuda_libs.ensure_cublas([str(tmp_path)])
    assert cuda_libs._loaded is None  # nothing half-loaded is remembered


@pytest.mark.skipif(
    ctypes.util.find_library("cublas") is not None, reason="this host has cuBLAS installed"
)
def test_whisper_on_cuda_without_cublas_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from plugins.whisper import WhisperSTT

    monkeypatch.setattr(cuda_libs, "_loaded", None)
    with pytest.raises(ModelLoadError, match=r"libcublas\.so\.12"):
        WhisperSTT(device="cuda")


def test_piper_on_cuda_without_the_cuda_provider_refuses_instead_of_running_on_cpu() -> None:
    from plugins.piper import PiperTTS, cuda_provider_available

    assert not cuda_provider_available()  # this suite runs on the CPU build of onnxruntime
    with pytest.raises(ModelLoadError, match="CUDAExecutionProvider"):
        PiperTTS(use_cuda=True)
