"""``python -m agent simulate``: one voice turn in-process, no LiveKit server, no network.

WAV in → noise filter → VAD + Smart Turn → faster-whisper → LLM → Piper → WAV out, through
the same VoiceManager a room uses (only the transport is a WAV instead of a track); prints
one JSON object with the transcript, the reply and the stage latencies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import resource
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from agent.models.engines import Engines
from agent.recording.recorder import recording_policy
from agent.session.config import SessionConfig
from agent.session.factory import clip_cache_of
from agent.session.voice_manager import SessionIO, VoiceManager
from agent.settings import Settings
from agent.sim.audio_file import read_audio_16k
from agent.sim.io import PacedAudioInput, PlayoutSegment, RecordingAudioOutput
from agent.sim.probe import TurnProbe
from agent.tools.box import RoomTools
from plugins._common.audio import resample, to_mono

SAMPLE_QUESTION = Path(__file__).parent / "data" / "sample_question.wav"
USER_IDENTITY = "simulated-user"
SAMPLE_QUESTION_TEXT = "Hello, can you tell me a short story about a friendly robot?"
SIMULATE_SEED = 42
SIMULATE_TENANT = "local"  # whose recordings simulate writes (CACHE_PATH/recordings/local/)


def max_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def voice_to_voice_ms(segment: PlayoutSegment, speech_ended_at: float) -> float:
    heard = segment.audible_at if segment.audible_at is not None else segment.started_at
    return round((heard - speech_ended_at) * 1000, 1)


def read_wav_16k(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise TextFileError(f"{path}: only 16-bit PCM WAV is supported")
        rate, channels = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    mono = to_mono(pcm.reshape(-1, channels).astype(np.float32) / 32768.0)
    return (resample(mono, rate, 16000) * 32767).astype(np.int16)


MAX_TEXT_FILE_BYTES = 1 << 20
MAX_TEXT_TURNS = 2000
MAX_TURN_CHARS = 2000


class TextFileError(ValueError):
    """``--text-file`` cannot be used as given."""


def read_text_turns(path: Path) -> list[str]:
    """The user turns of ``--text-file``: its non-empty lines, bounded in size and count."""
    if path.stat().st_size > MAX_TEXT_FILE_BYTES:
        raise TextFileError(f"{path}: larger than {MAX_TEXT_FILE_BYTES} bytes")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise TextFileError(f"{path}: no non-empty line")
    if len(lines) > MAX_TEXT_TURNS:
        raise TextFileError(f"{path}: more than {MAX_TEXT_TURNS} turns")
    if too_long := [i + 1 for i, ln in enumerate(lines) if len(ln) > MAX_TURN_CHARS]:
        raise TextFileError(f"{path}: turn {too_long[0]} is over {MAX_TURN_CHARS} characters")
    return lines


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


async def simulate(
    settings: Settings,
    input_wav: Path,
    output_wav: Path,
    config: SessionConfig | None = None,
    engines: Engines | None = None,
    text: str | list[str] | None = None,
    speech: np.ndarray | None = None,
) -> dict[str, Any]:
    """Run one voice turn through a room-less VoiceManager and report what happened.

    ``speech``: ``input_wav`` already decoded (16 kHz mono int16), when the caller has it."""
    if settings.llm_seed < 0:
        # a fixed seed makes the demo reproducible: the same question, the same reply
        settings = dataclasses.replace(settings, llm_seed=SIMULATE_SEED)
    if config is not None and config.audio is False:
        return await simulate_text(settings, text or SAMPLE_QUESTION_TEXT, config, engines)
    if speech is None:  # before any model loads: a bad file fails fast
        speech = read_audio_16k(input_wav)
    engines = engines or Engines.load(settings)
    manager = VoiceManager(
        engines,
        instructions=settings.instructions,
        tools=RoomTools.for_room(settings),
        recording=recording_policy(settings, SIMULATE_TENANT),
    )
    mic = PacedAudioInput()
    speaker = RecordingAudioOutput()
    probe = TurnProbe()
    attached = await manager.attach(USER_IDENTITY, SessionIO(mic, speaker), config=config)
    probe.watch(attached.session)
    recording = attached.recording  # its files stay after the manager closes
    try:
        await mic.play_silence(0.3)
        await mic.play(speech, 16000)
        trailing = asyncio.create_task(mic.play_silence(30.0))
        await asyncio.wait_for(speaker.first_frame.wait(), timeout=60)
        trailing.cancel()
        await asyncio.wait_for(speaker.wait_for_playout(), timeout=120)
        await asyncio.sleep(0.2)
    finally:
        await manager.aclose()
    voice = clip_cache_of(attached.session.tts)
    lookups = list(voice.lookups) if voice is not None else []
    pcm, rate = speaker.pcm()
    write_wav(output_wav, pcm, rate)
    return {
        "transcript": " ".join(probe.transcripts).strip(),
        "reply": " ".join(probe.replies).strip(),
        **{k: round(v, 1) for k, v in probe.first_latencies().items()},
        # from the last voiced sample of the input to the first audible sample of the reply
        "voice_to_voice_ms": voice_to_voice_ms(speaker.segments[0], mic.speech_ended_at[0]),
        # whether the reply's first sentence, the one tts_ttfb_ms measures, was cached
        "tts_cache": ("hit" if lookups[0].hit else "miss") if lookups else "off",
        "output_seconds": round(pcm.size / rate, 3),
        "output_wav": str(output_wav),
        **(
            {
                "recording": {
                    "audio": str(recording.files.audio),
                    "transcript": str(recording.files.transcript),
                }
            }
            if recording is not None
            else {}
        ),
        "max_rss_mb": max_rss_mb(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


async def simulate_text(
    settings: Settings,
    text: str | list[str],
    config: SessionConfig,
    engines: Engines | None = None,
) -> dict[str, Any]:
    """``audio: false``: typed turns (one, or a list: one session, one turn each) through
    the same VoiceManager, and proof that no audio engine was created (``engines_loaded``)."""
    texts = [text] if isinstance(text, str) else text
    engines = engines or Engines(settings)  # lazy: only what the session touches
    manager = VoiceManager(
        engines, instructions=settings.instructions, tools=RoomTools.for_room(settings)
    )
    probe = TurnProbe()
    attached = await manager.attach(USER_IDENTITY, config=config)
    probe.watch(attached.session)
    started = time.perf_counter()
    turns: list[dict[str, str]] = []
    try:
        for line in texts:
            turns.append({"user": line, "reply": await manager.reply_to_text(USER_IDENTITY, line)})
    finally:
        await manager.aclose()
    apology = settings.llm_apology
    return {
        "mode": "text",
        "input_text": texts[-1],
        "reply": turns[-1]["reply"] if turns else "",
        **({"turns": turns} if len(texts) > 1 else {}),
        "apologies": sum(1 for t in turns if t["reply"].strip() == apology),
        **{k: round(v, 1) for k, v in probe.first_latencies().items()},
        "reply_ms": round((time.perf_counter() - started) * 1000, 1),
        "engines_loaded": sorted(engines.loaded()),
        "max_rss_mb": max_rss_mb(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
