"""Odd audio at a session's input: every format is heard, nothing breaks, nothing grows.

The formats a room-less source can send (empty and single-sample frames, 8 to 48 kHz, 1 to 8
channels, a rate that changes mid-session, clipped speech) all reach VAD and STT as the same
16 kHz mono frames; twenty minutes of input leave memory, tasks and buffers where they were.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import psutil
import pytest
from livekit import rtc
from livekit.agents.voice.io import AudioInput

from agent.conversation.idle import IdlePolicy
from agent.session.audio_input import SESSION_SAMPLE_RATE, NormalizedAudioInput
from agent.session.voice_manager import SessionIO, VoiceManager
from agent.sim.io import PacedAudioInput, RecordingAudioOutput
from tests.audio_fixtures import normalize, speak, trim_silence, wer

QUESTION = "What is the weather like in Paris today?"


class ListSource(AudioInput):
    def __init__(self, frames: list[rtc.AudioFrame]) -> None:
        super().__init__(label="list")
        self._frames = iter(frames)

    async def __anext__(self) -> rtc.AudioFrame:
        try:
            return next(self._frames)
        except StopIteration:
            raise StopAsyncIteration from None


def odd_frames(samples: np.ndarray, rate: int, channels: int, seed: int) -> list[rtc.AudioFrame]:
    """Interleaved samples cut at random sizes (1 sample to 100 ms), with empty frames."""
    rng = np.random.default_rng(seed)
    frames, pos, total = [], 0, samples.size // channels
    while pos < total:
        n = int(rng.choice([0, 1, 7, int(rng.integers(1, rate // 10))]))
        n = min(n, total - pos)
        chunk = samples[pos * channels : (pos + n) * channels]
        frames.append(rtc.AudioFrame(chunk.tobytes(), rate, channels, n))
        pos += n
    return frames


@pytest.mark.parametrize(
    ("rate", "channels"), [(8000, 1), (11025, 2), (16000, 1), (22050, 4), (44100, 6), (48000, 8)]
)
async def test_every_format_becomes_the_same_frames_and_keeps_its_duration(
    rate: int, channels: int
) -> None:
    seconds = 1.37
    t = np.arange(int(seconds * rate)) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 20000).astype(np.int16)
    frames = odd_frames(np.repeat(tone, channels), rate, channels, seed=rate)
    # impossible formats in the middle are dropped, not passed on or raised
    frames.insert(len(frames) // 2, rtc.AudioFrame(b"\0\0" * 8, 0, 1, 8))
    frames.insert(len(frames) // 3, rtc.AudioFrame(b"\0\0" * 8, rate, 0, 8))
    normalized = NormalizedAudioInput(ListSource(frames))
    out = [frame async for frame in normalized]

    assert {(f.sample_rate, f.num_channels, f.samples_per_channel) for f in out} == {
        (SESSION_SAMPLE_RATE, 1, SESSION_SAMPLE_RATE // 100)
    }
    assert normalized.frames_dropped == 2
    produced = sum(f.samples_per_channel for f in out) / SESSION_SAMPLE_RATE
    # the resampler holds back a few ms and the last partial frame stays pending
    assert seconds - 0.06 <= produced <= seconds
    pcm = np.concatenate([np.frombuffer(f.data, np.int16) for f in out]).astype(np.float32)
    middle = pcm[len(pcm) // 4 : 3 * len(pcm) // 4]
    spectrum = np.abs(np.fft.rfft(middle))
    peak_hz = np.argmax(spectrum) * SESSION_SAMPLE_RATE / len(middle)
    assert abs(peak_hz - 440) < 5  # the tone survives downmix and resampling
    assert 18000 < np.abs(middle).max() <= 32767


async def test_clipping_saturates_instead_of_wrapping() -> None:
    square = np.tile(np.array([32767] * 40 + [-32768] * 40, dtype=np.int16), 100)
    out = [f async for f in NormalizedAudioInput(ListSource(odd_frames(square, 48000, 1, 3)))]
    pcm = np.concatenate([np.frombuffer(f.data, np.int16) for f in out])
    # resampling a full-scale square overshoots; the overshoot is clipped, never wrapped
    # around to the opposite sign (which would be a loud click)
    assert pcm.max() == 32767 and pcm.min() == -32767
    signs = np.sign(pcm[200:-200].astype(np.int32))
    assert np.count_nonzero(np.diff(signs)) < 4 * 100  # about 2 sign changes per period


@pytest.mark.slow
async def test_a_session_hears_every_format_switching_midway(engines) -> None:
    manager = VoiceManager(engines, instructions="Answer in one short sentence.")
    # replies are heard 4x faster: the turns are what is tested, not the listening
    mic, speaker = PacedAudioInput(), RecordingAudioOutput(playout_speed=4)
    heard: list[str] = []
    try:
        attached = await manager.attach("alice", SessionIO(mic, speaker))
        attached.session.on(
            "user_input_transcribed", lambda ev: ev.is_final and heard.append(ev.transcript)
        )
        cases: list[tuple[int, int, float]] = [(8000, 1, 1.0), (48000, 8, 1.0), (22050, 2, 8.0)]
        for turn, (rate, channels, gain) in enumerate(cases):
            speech = trim_silence(speak(QUESTION, rate=rate)).astype(np.float32) * gain
            clipped = np.clip(speech, -32768, 32767).astype(np.int16)  # gain 8: hard clipping
            frames = odd_frames(np.repeat(clipped, channels), rate, channels, seed=turn)
            replies = len(speaker.segments)
            await mic.play_silence(0.3)
            await mic.play_frames(frames)
            tail = asyncio.create_task(mic.play_silence(60))
            try:
                async with asyncio.timeout(60):
                    await speaker.wait_for_segments(replies + 1)
                    await speaker.wait_for_playout()
            finally:
                tail.cancel()
    finally:
        await manager.aclose()

    assert len(heard) == len(cases), heard
    # 8 kHz is telephone band: tiny.en's word errors on it swing with where the VAD cut the
    # utterance (0.1 to 0.6 seen on one machine), so that turn must get the question's
    # content across; the wideband turns must be heard nearly word for word
    narrowband, *wideband = heard
    content = {"weather", "paris", "today"}
    assert len(content & set(normalize(narrowband).split())) >= 2, heard
    for transcript in wideband:
        assert wer(QUESTION, transcript) <= 0.35, heard
    assert len(speaker.segments) == len(cases)  # every turn was answered


class HissSource(AudioInput):
    """``seconds`` of -60 dBFS hiss at 48 kHz, delivered ``speedup`` times faster than real
    time, pulled by the session."""

    def __init__(self, seconds: float, speedup: float) -> None:
        super().__init__(label="hiss")
        self.total = int(seconds * 100)
        self.sent = 0
        self._speedup = speedup
        self._noise = (np.random.default_rng(0).standard_normal(48000) * 30).astype(np.int16)
        self._t0 = 0.0

    async def __anext__(self) -> rtc.AudioFrame:
        if self.sent >= self.total:
            raise StopAsyncIteration
        if self.sent == 0:
            self._t0 = time.perf_counter()
        delay = self._t0 + self.sent * 0.01 / self._speedup - time.perf_counter()
        await asyncio.sleep(max(0.0, delay))
        start = (self.sent % 100) * 480
        self.sent += 1
        return rtc.AudioFrame(self._noise[start : start + 480].tobytes(), 48000, 1, 480)


@pytest.mark.slow
async def test_twenty_minutes_of_input_leave_memory_and_tasks_bounded(engines) -> None:
    # twenty minutes keep the suite short; benchmarks/soak.py runs for as long as asked
    duration = 1200.0
    # 30x leaves the 2-core machine room: if the VAD falls behind, queued frames (a test
    # artefact, not the session's memory) would be counted as growth
    source = HissSource(duration, speedup=30)
    # no idle prompts: they run on the wall clock, so at 30x the first one (and Piper's
    # first synthesis, a one-time ~20 MB) landed on the 10-minute sample, half the time
    # before it and half after; tests/agent/test_call_initiative.py covers them
    no_idle = IdlePolicy(after_s=0, prompts=0, prompt="", goodbye="")
    manager = VoiceManager(engines, instructions="Answer in one short sentence.", idle=no_idle)
    process = psutil.Process()
    samples: list[tuple[float, int, int]] = []
    attached: Any = None
    try:
        attached = await manager.attach("alice", SessionIO(source, RecordingAudioOutput()))
        while source.sent < source.total:
            await asyncio.sleep(2)
            samples.append((source.sent / 100, process.memory_info().rss, len(asyncio.all_tasks())))
        assert attached.session.agent_state == "listening"
    finally:
        await manager.aclose()

    after_10_min = next(s for s in samples if s[0] >= 600)
    end = samples[-1]
    growth_mb = (end[1] - after_10_min[1]) / 1e6
    print(f"RSS {after_10_min[1] / 1e6:.0f} MB at 10 min of audio, {end[1] / 1e6:.0f} at 20 min")
    assert growth_mb < 20, samples
    assert end[2] <= after_10_min[2] + 2  # no task left behind per frame or per second
