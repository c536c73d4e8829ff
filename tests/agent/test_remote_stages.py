"""Stages on a serving engine: STT and TTS over OpenAI-compatible APIs (a real server on
loopback around the packaged engines), the LLM embedded, and no speech model in the worker."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.models.engines import Engines
from agent.settings import Settings
from tests.audio_fixtures import read_wav, speak, wer, write_wav
from tests.llm_server import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
# a sentence tiny.en decodes exactly with whisper's own 30 s window, as a server decodes
QUESTION = "How many days are there in a week?"


@pytest.fixture(scope="module")
def speech_server(cache_dir: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.speech_server",
            "--port",
            str(port),
            "--cache",
            str(cache_dir),
        ],
        cwd=REPO,
    )
    try:
        wait_for_port(proc, port, "the speech server")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stats(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/stats", timeout=5) as r:
        return json.loads(r.read())


def remote_settings(cache_dir: Path, base: str) -> Settings:
    return Settings.from_env(
        {
            "CACHE_PATH": str(cache_dir),
            "LLM_SEED": "42",
            "STT_BASE_URL": f"{base}/v1",
            "STT_REMOTE_MODEL": "tiny.en",
            "TTS_BASE_URL": f"{base}/v1",
            "TTS_REMOTE_MODEL": "piper-joe",
            "TTS_REMOTE_VOICE": "joe",
            "CACHE_MAX_BYTES": "0",  # every sentence reaches the server
        }
    )


@pytest.mark.slow
async def test_a_voice_turn_with_stt_and_tts_on_serving_engines(
    speech_server: str, cache_dir: Path, tmp_path: Path
) -> None:
    from agent.sim.simulate import simulate

    before = stats(speech_server)
    settings = remote_settings(cache_dir, speech_server)
    engines = Engines(settings)
    question = tmp_path / "question.wav"
    write_wav(question, speak(QUESTION), 16000)
    result = await simulate(settings, question, tmp_path / "reply.wav", engines=engines)

    assert wer(QUESTION, result["transcript"]) <= 0.2
    assert result["reply"] and result["voice_to_voice_ms"] > 0
    after = stats(speech_server)
    assert after["transcriptions"] > before["transcriptions"]
    assert after["speech"] > before["speech"]
    assert after["last"]["transcription"]["model"] == "tiny.en"
    assert after["last"]["speech"]["voice"] == "joe"
    # the reply came back from the server and was played: seconds of audio at the
    # endpoint's rate (the plugin resamples the server's WAV)
    reply, rate, _ = read_wav(tmp_path / "reply.wav")
    assert reply.size / rate > 0.5
    # the turn ran on the servers: no whisper or Piper weights in this process
    assert engines.speech_models_here() == set()
    assert engines.loaded() >= {"stt", "tts", "llm"}


async def test_speak_api_voice_on_the_endpoint_keyed_by_speed(
    speech_server: str, cache_dir: Path, tmp_path: Path
) -> None:
    """/v1/speak's voice on TTS_BASE_URL: the speed reaches the server, and the clip cache
    keys the endpoint's clips by it (a clip at one speed never answers another)."""
    import dataclasses

    from agent.http.speaker import Speaker

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(cache_dir / "models")
    settings = dataclasses.replace(
        remote_settings(cache_dir, speech_server), cache_path=cache, cache_max_bytes=10**8
    )
    engines = Engines(settings)
    speaker = Speaker(engines, max_audio_s=60)
    parts = await speaker.prepare("Hello from the serving engine.", None)
    slow = b"".join([c async for c in speaker.stream("acme", parts, 0.8)])
    assert stats(speech_server)["last"]["speech"]["speed"] == 0.8
    fast = b"".join([c async for c in speaker.stream("acme", parts, 1.25)])
    assert stats(speech_server)["last"]["speech"]["speed"] == 1.25
    assert len(slow) > len(fast) * 1.2  # really spoken at two rates
    served = stats(speech_server)["speech"]
    again = b"".join([c async for c in speaker.stream("acme", parts, 0.8)])
    assert again == slow and stats(speech_server)["speech"] == served  # from the cache
    assert engines.speech_models_here() == set()
