"""What the soak and load benchmarks share: speech to play, simulated callers driven through
the real VoiceManager, and the process's resource figures.

A caller is a room-less participant (``SessionIO`` with a paced microphone and a recording
speaker), so every session runs the code path a room runs: noise filter slot, VAD, turn
detector, STT, LLM, TTS with the clip cache, barge-in.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.session.voice_manager import ParticipantSession, SessionIO, VoiceManager  # noqa: E402
from agent.sim.io import PacedAudioInput, RecordingAudioOutput  # noqa: E402
from agent.sim.probe import TurnProbe  # noqa: E402
from agent.sim.simulate import read_wav_16k, voice_to_voice_ms  # noqa: E402

QUESTIONS = [
    "What time does the restaurant open tomorrow?",
    "Can you book a table for two people?",
    "What is the weather like in Paris today?",
    "Please tell me a fun fact about the ocean.",
]
BARGE_IN = "Wait, stop please."
LONG_REPLY = (
    "Let me tell you everything about the history of the city. It was founded long ago by "
    "traders who came along the river, and it grew slowly for centuries."
)


# Rendered speech is kept here, so a host without espeak-ng (a GPU machine with no package
# registry) runs the benchmarks on clips rendered elsewhere and carried along.
SPEECH_DIR = Path(
    os.environ.get("BENCH_SPEECH_DIR", Path(__file__).parent.parent / ".cache" / "bench-speech")
)


def cached_speech(key: str, render: Callable[[], np.ndarray]) -> np.ndarray:
    """``render()``'s int16 result, computed once per ``key`` and kept under ``SPEECH_DIR``."""
    path = SPEECH_DIR / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".npy")
    if path.is_file():
        return np.load(path)
    pcm = render()
    SPEECH_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, pcm)
    tmp.replace(path)
    return pcm


def espeak_16k(text: str) -> np.ndarray:
    """espeak-ng speech as 16 kHz mono int16, trimmed of its silent edges."""
    return cached_speech(f"espeak en-us 150 trimmed|{text}", lambda: _espeak_16k(text))


def _espeak_16k(text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
        pcm = read_wav_16k(wav)
    loud = np.flatnonzero(np.abs(pcm) > 300)
    return pcm[loud[0] : loud[-1] + 1] if loud.size else pcm


@dataclass
class TurnResult:
    voice_to_voice_ms: float | None
    stt_final_ms: float | None
    eou_ms: float | None
    llm_ttft_ms: float | None
    tts_ttfb_ms: float | None
    jitter_ms: float | None
    error: str | None = None


@dataclass
class Caller:
    """One simulated participant of a VoiceManager."""

    identity: str
    mic: PacedAudioInput
    speaker: RecordingAudioOutput
    probe: TurnProbe
    attached: ParticipantSession
    results: list[TurnResult] = field(default_factory=list)
    barge_in_ms: list[float] = field(default_factory=list)  # from the user's speech onset
    # from the VAD's trigger (the session's "user speaking" event): what the worker adds
    barge_in_vad_ms: list[float] = field(default_factory=list)
    vad_speaking_at: list[float] = field(default_factory=list)

    @classmethod
    async def join(
        cls, manager: VoiceManager, identity: str, *, playout_speed: float = 1.0
    ) -> Caller:
        """``playout_speed`` > 1: the caller hears replies faster than real time (for runs
        that measure resources, not latencies)."""
        mic, probe = PacedAudioInput(), TurnProbe()
        speaker = RecordingAudioOutput(keep_audio=False, playout_speed=playout_speed)
        attached = await manager.attach(identity, SessionIO(mic, speaker))
        probe.watch(attached.session)
        caller = cls(identity, mic, speaker, probe, attached)

        def on_user_state(ev: Any) -> None:
            # when the session hears of it (the event's own timestamp is back-dated to the
            # speech's start): the VAD has decided that this is speech
            if ev.new_state == "speaking":
                caller.vad_speaking_at.append(time.time())

        attached.session.on("user_state_changed", on_user_state)
        return caller

    async def turn(self, speech: np.ndarray, *, within: float = 90.0) -> TurnResult:
        """Say ``speech``, wait for the whole reply, and read this turn's latencies."""
        before = {k: len(getattr(self.probe, k)) for k in _STAGES}
        segments = len(self.speaker.segments)
        await self.mic.play_silence(0.3)
        await self.mic.play(speech, 16000)
        tail = asyncio.create_task(self.mic.play_silence(within))
        try:
            async with asyncio.timeout(within):
                await self.speaker.wait_for_segments(segments + 1)
                await self.speaker.wait_for_playout()
        except TimeoutError:
            result = TurnResult(None, None, None, None, None, None, error="no reply")
            self.results.append(result)
            return result
        finally:
            tail.cancel()
        seg = self.speaker.segments[segments]
        stages = {
            k: (
                getattr(self.probe, k)[before[k]]
                if len(getattr(self.probe, k)) > before[k]
                else None
            )
            for k in _STAGES
        }
        result = TurnResult(
            voice_to_voice_ms=voice_to_voice_ms(seg, self.mic.speech_ended_at[-1]),
            jitter_ms=frame_jitter_ms(seg.arrivals),
            **stages,
        )
        self.results.append(result)
        return result

    async def barge_in(self, speech: np.ndarray, *, after: float) -> float | None:
        """The agent starts a long reply; ``after`` seconds in, the user talks over it.
        Returns ms from the user's speech start to the agent's audio stopping."""
        await self.mic.play_silence(0.3)
        segments = len(self.speaker.segments)
        handle = self.attached.session.say(LONG_REPLY)
        try:
            async with asyncio.timeout(60):
                await self.speaker.wait_for_segments(segments + 1)
        except TimeoutError:
            return None
        await self.mic.play_silence(after)
        await self.mic.play(speech, 16000)
        tail = asyncio.create_task(self.mic.play_silence(60))
        try:
            await asyncio.wait_for(handle.wait_for_playout(), timeout=60)
        except TimeoutError:
            return None
        finally:
            tail.cancel()
        seg = self.speaker.segments[segments]
        if seg.stopped_at is None or seg.interrupted_at is None:
            return None
        onset = self.mic.speech_started_at[-1]
        ms = (seg.stopped_at - onset) * 1000
        self.barge_in_ms.append(ms)
        triggers = [t for t in self.vad_speaking_at if onset - 0.05 <= t <= seg.stopped_at + 0.5]
        if triggers:
            self.barge_in_vad_ms.append((seg.stopped_at - triggers[0]) * 1000)
        return ms


_STAGES = ("stt_final_ms", "eou_ms", "llm_ttft_ms", "tts_ttfb_ms")


def frame_jitter_ms(arrivals: list[tuple[float, float]]) -> float | None:
    """p95 of how late each agent frame arrived against the pace its audio sets.

    ``arrivals`` holds (wall time the frame reached the output, audio seconds before it).
    A frame is late by how far it trails the first frame's time plus the audio before it;
    audio that arrives early is buffered by the output and costs nothing."""
    if len(arrivals) < 2:
        return None
    t0 = arrivals[0][0]
    late = [max(0.0, (t - t0 - audio_before) * 1000) for t, audio_before in arrivals]
    return percentile(late, 95)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(values: list[float]) -> dict[str, float | int | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"n": 0, "p50": None, "p95": None, "p99": None}
    return {
        "n": len(vals),
        "p50": round(percentile(vals, 50), 1),
        "p95": round(percentile(vals, 95), 1),
        "p99": round(percentile(vals, 99), 1),
    }


@dataclass
class Resources:
    rss_mb: float
    fds: int
    threads: int
    tasks: int
    cpu_s: float

    @classmethod
    def now(cls, process: psutil.Process | None = None) -> Resources:
        process = process or psutil.Process()
        cpu = process.cpu_times()
        children_cpu = 0.0
        rss = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                c = child.cpu_times()
                children_cpu += c.user + c.system
                rss += child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:
            tasks = 0
        return cls(
            rss_mb=round(rss / 1e6, 1),
            fds=process.num_fds(),
            threads=threading.active_count()
            if process.pid == os.getpid()
            else process.num_threads(),
            tasks=tasks,
            cpu_s=round(cpu.user + cpu.system + children_cpu, 2),
        )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu_name(),
        "python": sys.version.split()[0],
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name, or None (no driver, or no nvidia-ml-py)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return None
