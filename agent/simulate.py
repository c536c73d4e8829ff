"""``python -m agent simulate``: one voice turn in-process, no LiveKit server, no network.

WAV in → noise filter → VAD + Smart Turn → faster-whisper → llama.cpp → Piper → WAV out;
prints one JSON object with the transcript, the reply and the stage latencies.
"""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
from livekit.agents import Agent, metrics

from plugins._common.audio import resample, to_mono
from plugins.noise import RNNoiseFilter

from .engines import Engines
from .settings import Settings
from .sim_io import PacedAudioInput, RecordingAudioOutput

SAMPLE_QUESTION = Path(__file__).parent / "data" / "sample_question.wav"
INSTRUCTIONS = "You are a friendly voice assistant. Answer in one or two short sentences."


def read_wav_16k(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        rate, channels = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    mono = to_mono(pcm.reshape(-1, channels).astype(np.float32) / 32768.0)
    return (resample(mono, rate, 16000) * 32767).astype(np.int16)


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


async def simulate(settings: Settings, input_wav: Path, output_wav: Path) -> dict[str, Any]:
    engines = Engines.load(settings.cache_path)
    session = engines.session()
    mic = PacedAudioInput(noise_filter=RNNoiseFilter())
    speaker = RecordingAudioOutput()
    session.input.audio = mic
    session.output.audio = speaker
    found: dict[str, float] = {}
    transcript: list[str] = []
    reply: list[str] = []

    def on_metrics(ev: Any) -> None:
        m = ev.metrics
        if isinstance(m, metrics.EOUMetrics) and "eou_ms" not in found:
            found["eou_ms"] = m.end_of_utterance_delay * 1000
            found["stt_final_ms"] = m.transcription_delay * 1000
        elif isinstance(m, metrics.LLMMetrics) and "llm_ttft_ms" not in found:
            found["llm_ttft_ms"] = m.ttft * 1000
        elif isinstance(m, metrics.TTSMetrics) and "tts_ttfb_ms" not in found:
            found["tts_ttfb_ms"] = m.ttfb * 1000

    def on_item(ev: Any) -> None:
        role = getattr(ev.item, "role", None)  # the first item may be a handoff with no role
        text = getattr(ev.item, "text_content", None)
        if role == "assistant" and text:
            reply.append(text)

    session.on("metrics_collected", on_metrics)
    session.on(
        "user_input_transcribed", lambda ev: ev.is_final and transcript.append(ev.transcript)
    )
    session.on("conversation_item_added", on_item)
    await session.start(Agent(instructions=INSTRUCTIONS))
    try:
        await mic.play_silence(0.3)
        await mic.play(read_wav_16k(input_wav), 16000)
        trailing = asyncio.create_task(mic.play_silence(30.0))
        await asyncio.wait_for(speaker.first_frame.wait(), timeout=60)
        trailing.cancel()
        await asyncio.wait_for(speaker.wait_for_playout(), timeout=120)
        await asyncio.sleep(0.2)
    finally:
        await session.aclose()
    pcm, rate = speaker.pcm()
    write_wav(output_wav, pcm, rate)
    return {
        "transcript": " ".join(transcript).strip(),
        "reply": " ".join(reply).strip(),
        **{k: round(v, 1) for k, v in found.items()},
        "voice_to_voice_ms": round(
            (speaker.segments[0].started_at - mic.speech_ended_at[0]) * 1000, 1
        ),
        "output_seconds": round(pcm.size / rate, 3),
        "output_wav": str(output_wav),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
