"""``python -m agent simulate`` as a user runs it: any WAV in, one JSON object out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from plugins._common.audio import resample
from tests.audio_fixtures import read_wav, speak, wer, write_wav

REPO = Path(__file__).resolve().parents[2]
KEYS = ("stt_final_ms", "eou_ms", "llm_ttft_ms", "tts_ttfb_ms", "voice_to_voice_ms")


def fresh_cache(tmp_path: Path, cache_dir: Path) -> Path:
    """A CACHE_PATH with the downloaded models and an empty clip cache."""
    fresh = tmp_path / "cache"
    fresh.mkdir()
    (fresh / "models").symlink_to(cache_dir / "models")
    return fresh


def run_simulate(
    tmp_path: Path, cache_dir: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "simulate", *args],
        cwd=REPO,
        env={
            "PATH": "/usr/bin:/bin",
            "CACHE_PATH": str(cache_dir),
            "HOME": str(tmp_path),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.slow
def test_simulate_unseen_speech_any_format_twice(
    tmp_path: Path, cache_dir: Path, whisper_stt
) -> None:
    question = "Could you tell me how tall the tallest mountain in the world is?"
    stereo_44k = speak(question, rate=44100, channels=2)
    wav_in, wav_out = tmp_path / "question.wav", tmp_path / "answer.wav"
    write_wav(wav_in, stereo_44k, 44100, channels=2)

    cache = fresh_cache(tmp_path, cache_dir)
    runs = []
    # the second run also records (allowed and asked): the call's audio and transcript
    record_env = {"RECORDING_ALLOWED": "true", "RECORDING_PATH": str(tmp_path / "rec")}
    for extra, env in (([], None), (["--config", '{"recording": true}'], record_env)):
        code, stdout, stderr = run_simulate(
            tmp_path, cache, "--input", str(wav_in), "--output", str(wav_out), *extra, env=env
        )
        assert code == 0, stderr[-3000:]
        lines = [line for line in stdout.splitlines() if line.strip()]
        assert len(lines) == 1, stdout  # exactly one JSON object; the logs went to stderr
        runs.append(json.loads(lines[0]))
    result, again = runs
    # the same input gives the same reply, and its first sentence now comes from the cache
    assert (result["tts_cache"], again["tts_cache"]) == ("miss", "hit")
    assert again["reply"] == result["reply"]
    assert any((cache / "clips").glob("??/*.clip"))

    assert wer(question, result["transcript"]) <= 0.2, result["transcript"]
    for key in KEYS:
        assert result[key] > 0, (key, result)
    assert result["reply"] and result["output_wav"] == str(wav_out)

    # the reply WAV says the printed reply
    pcm, rate, channels = read_wav(wav_out)
    assert channels == 1 and abs(pcm.size / rate - result["output_seconds"]) < 0.05
    audio_16k = resample(pcm.astype(np.float32) / 32768.0, rate, 16000)
    heard = whisper_stt.transcribe_array(audio_16k)
    assert wer(result["reply"], heard) <= 0.2, (result["reply"], heard)

    # only the run that asked was recorded, under the simulated tenant
    assert "recording" not in result
    audio = Path(again["recording"]["audio"])
    assert audio.parent == tmp_path / "rec" / "local"
    doc = json.loads(Path(again["recording"]["transcript"]).read_text())
    assert [t["speaker"] for t in doc["turns"]] == ["user", "agent"]
    with av.open(str(audio)) as container:
        stream = container.streams.audio[0]
        recorded = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=1)
        rate = stream.rate
    assert recorded.shape[0] == 2  # the caller and the agent
    assert abs(recorded.shape[1] / rate - doc["duration_s"]) <= 0.5


def test_simulate_rejects_a_bad_config(tmp_path: Path, cache_dir: Path) -> None:
    code, stdout, _ = run_simulate(tmp_path, cache_dir, "--config", '{"tts": {"sped": 2}}')
    assert code == 2
    error = json.loads(stdout)["error"]
    assert error == {
        "code": "unknown_field",
        "message": "unknown field tts.sped",
        "field": "tts.sped",
    }


def test_simulate_text_mode_loads_no_audio_engine(tmp_path: Path, cache_dir: Path) -> None:
    code, stdout, stderr = run_simulate(
        tmp_path, cache_dir, "--config", '{"audio": false}', "--text", "What is two plus two?"
    )
    assert code == 0, stderr[-2000:]
    result = json.loads(stdout)
    assert result["mode"] == "text" and result["reply"]
    assert result["engines_loaded"] == ["llm"]
    assert result["llm_ttft_ms"] > 0


@pytest.mark.slow
def test_simulate_text_file_runs_one_session_turn_by_turn(tmp_path: Path, cache_dir: Path) -> None:
    lines = tmp_path / "turns.txt"
    lines.write_text("My name is Ada.\n\n  \nWhat is my name?\n", encoding="utf-8")
    code, stdout, stderr = run_simulate(
        tmp_path, cache_dir, "--config", '{"audio": false}', "--text-file", str(lines)
    )
    assert code == 0, stderr[-2000:]
    result = json.loads(stdout)
    assert [t["user"] for t in result["turns"]] == ["My name is Ada.", "What is my name?"]
    assert all(t["reply"] for t in result["turns"]) and result["apologies"] == 0
    assert result["engines_loaded"] == ["llm"]

    # what cannot be used is one line and status 2, before any model loads
    code, stdout, stderr = run_simulate(
        tmp_path, cache_dir, "--config", '{"audio": true}', "--text-file", str(lines)
    )
    assert code == 2 and stderr.strip().count("\n") == 0 and "text session" in stderr


def test_text_file_turns_are_bounded(tmp_path: Path) -> None:
    from agent.sim.simulate import MAX_TURN_CHARS, TextFileError, read_text_turns

    f = tmp_path / "t.txt"
    f.write_text("hello\n" + "x" * (MAX_TURN_CHARS + 1) + "\n", encoding="utf-8")
    with pytest.raises(TextFileError, match="turn 2 is over"):
        read_text_turns(f)
    f.write_text("\n \n", encoding="utf-8")
    with pytest.raises(TextFileError, match="no non-empty line"):
        read_text_turns(f)


def test_the_readme_command_finds_its_sample_question() -> None:
    """``python -m agent simulate`` with no file speaks the packaged sample question (the
    README's first command); it once moved away from the module that points at it."""
    from agent.sim.simulate import SAMPLE_QUESTION

    samples, rate, channels = read_wav(SAMPLE_QUESTION)
    assert (rate, channels) == (16000, 1) and samples.size > rate  # over a second of speech
