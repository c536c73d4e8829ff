"""Room-less audio I/O for an ``AgentSession``: speech from a WAV in real time, agent audio
captured with timestamps.

These implement livekit-agents' ``io.AudioInput`` / ``io.AudioOutput``, so the session code
path is the one that runs in a room; only the transport differs. ``simulate``, the tests and
the load harness use them through ``VoiceManager.attach(identity, SessionIO(...))``, which
also puts the session's noise filter in front of the input as RoomIO would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from livekit import rtc
from livekit.agents import utils
from livekit.agents.voice.io import AudioInput, AudioOutput, AudioOutputCapabilities

FRAME_MS = 10
# A 10 ms window counts as voiced above this RMS (-45 dBFS) and 12 dB over the clip's own
# noise floor, so a noisy recording's hiss is not taken for speech.
VOICED_DBFS = -45.0
FLOOR_MARGIN_DB = 12.0
# The agent is audible from its first sample above -40 dBFS (Piper leads with near-silence).
AUDIBLE_LEVEL = 10 ** (-40.0 / 20.0) * 32768


def voiced_span(samples: npt.NDArray[np.int16], rate: int, channels: int = 1) -> tuple[int, int]:
    """(first, last + 1) sample of the voiced part of ``samples`` (per channel), found from
    the signal itself; (0, 0) when nothing is voiced. Latency figures start at ``last + 1``:
    what the caller waits is measured from the end of their speech, not of the recording."""
    mono = samples.reshape(-1, channels).astype(np.float32).mean(axis=1) / 32768.0
    win = max(1, rate * FRAME_MS // 1000)
    n = mono.size // win
    if n == 0:
        return 0, 0
    rms = np.sqrt(np.mean(mono[: n * win].reshape(n, win) ** 2, axis=1) + 1e-12)
    floor = float(np.percentile(rms, 10))
    threshold = max(10 ** (VOICED_DBFS / 20), floor * 10 ** (FLOOR_MARGIN_DB / 20))
    voiced = np.flatnonzero(rms > threshold)
    if voiced.size == 0:
        return 0, 0
    return int(voiced[0]) * win, int(voiced[-1] + 1) * win


class PacedAudioInput(AudioInput):
    """Plays PCM into the session at real-time pace, 10 ms frames, like a microphone track."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(label="PacedAudioInput")
        self._ch = utils.aio.Chan[rtc.AudioFrame]()
        self._clock = clock
        self.speech_started_at: list[float] = []
        self.speech_ended_at: list[float] = []

    async def __anext__(self) -> rtc.AudioFrame:
        return await self._ch.__anext__()

    async def play(
        self,
        samples: npt.NDArray[np.int16],
        rate: int,
        channels: int = 1,
        *,
        is_speech: bool = True,
    ) -> None:
        """Push ``samples`` (interleaved int16) in real time; returns when the last frame is sent.

        When ``is_speech`` is set, the wall-clock times of the clip's first and last voiced
        samples are recorded as a start and an end of user speech: the reference points of
        every latency the harness reports (trailing silence in the clip is not speech).
        """
        per = rate * FRAME_MS // 1000
        total = samples.size // channels
        start = time.perf_counter()
        began = self._clock()
        for i, offset in enumerate(range(0, total, per)):
            chunk = samples[offset * channels : (offset + per) * channels]
            frame = rtc.AudioFrame(chunk.tobytes(), rate, channels, chunk.size // channels)
            self._ch.send_nowait(frame)
            # sleep to the frame's due time rather than a fixed step so pacing never drifts
            due = start + (i + 1) * FRAME_MS / 1000
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        if is_speech:
            first, last = voiced_span(samples, rate, channels)
            if last == 0:  # nothing voiced: the clip's edges are all there is
                first, last = 0, total
            self.speech_started_at.append(began + first / rate)
            self.speech_ended_at.append(began + last / rate)

    async def play_frames(self, frames: list[rtc.AudioFrame], *, is_speech: bool = True) -> None:
        """Push prepared frames (any sizes, rates and channel counts), each at its own pace."""
        start = time.perf_counter()
        began = self._clock()
        due = start
        offset = 0.0  # audio seconds before the frame
        voiced: list[tuple[float, float]] = []
        for frame in frames:
            self._ch.send_nowait(frame)
            if frame.sample_rate > 0:
                length = frame.samples_per_channel / frame.sample_rate
                pcm = np.frombuffer(frame.data, dtype=np.int16)
                first, last = voiced_span(pcm, frame.sample_rate, frame.num_channels)
                if last > 0:
                    voiced.append(
                        (offset + first / frame.sample_rate, offset + last / frame.sample_rate)
                    )
                due += length
                offset += length
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        if is_speech:
            start_s, end_s = (voiced[0][0], voiced[-1][1]) if voiced else (0.0, offset)
            self.speech_started_at.append(began + start_s)
            self.speech_ended_at.append(began + end_s)

    async def play_silence(self, seconds: float, rate: int = 16000) -> None:
        await self.play(np.zeros(int(seconds * rate), dtype=np.int16), rate, is_speech=False)

    def close(self) -> None:
        self._ch.close()


@dataclass
class PlayoutSegment:
    started_at: float
    # when the listener first hears the agent: the first sample above AUDIBLE_LEVEL, placed on
    # the playout clock (None while the segment is silent)
    audible_at: float | None = None
    frames: list[rtc.AudioFrame] = field(default_factory=list)
    duration: float = 0.0
    interrupted_at: float | None = None
    # (wall time the frame reached the output, audio seconds before it): frame pacing
    arrivals: list[tuple[float, float]] = field(default_factory=list)
    paused_at: list[float] = field(default_factory=list)
    resumed_at: list[float] = field(default_factory=list)
    paused_for: float = 0.0

    @property
    def stopped_at(self) -> float | None:
        """When the listener stopped hearing the agent: first pause or the interruption."""
        times = [*self.paused_at[:1], *([self.interrupted_at] if self.interrupted_at else [])]
        return min(times) if times else None


class RecordingAudioOutput(AudioOutput):
    """Collects the agent's audio, plays it out in simulated real time (so interruptions
    land mid-sentence as they would in a room) and timestamps every segment. It can pause
    and resume like RoomIO's output, which is what lets the session resume its reply after
    a false interruption (a backchannel).

    ``playout_speed`` above 1 plays the audio out that many times faster than real time (the
    agent finishes speaking sooner; its audio is kept whole): for tests whose turns need not
    overlap the agent's speech, which would otherwise spend most of their time listening."""

    def __init__(
        self,
        *,
        sample_rate: int | None = None,
        clock: Callable[[], float] = time.time,
        keep_audio: bool = True,
        playout_speed: float = 1.0,
    ) -> None:
        super().__init__(
            label="RecordingAudioOutput",
            capabilities=AudioOutputCapabilities(pause=True),
            sample_rate=sample_rate,
        )
        if playout_speed <= 0:
            raise ValueError("playout_speed must be > 0")
        self._clock = clock
        self._speed = playout_speed
        self._keep_audio = keep_audio  # off for load runs: timings only, memory flat
        self.segments: list[PlayoutSegment] = []
        self._current: PlayoutSegment | None = None
        self._finish: asyncio.TimerHandle | None = None
        self._flushed: PlayoutSegment | None = None
        self._paused_since: float | None = None
        self.first_frame = asyncio.Event()
        self._segment_started = asyncio.Event()

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._current is None:
            self._current = PlayoutSegment(started_at=self._clock())
            self.segments.append(self._current)
            self.on_playback_started(created_at=self._current.started_at)
            self.first_frame.set()
            self._segment_started.set()
        if self._keep_audio:
            self._current.frames.append(frame)
        seg = self._current
        if seg.audible_at is None and frame.samples_per_channel:
            loud = np.flatnonzero(np.abs(np.frombuffer(frame.data, dtype=np.int16)) > AUDIBLE_LEVEL)
            if loud.size:
                at = seg.duration + int(loud[0]) // frame.num_channels / frame.sample_rate
                seg.audible_at = seg.started_at + seg.paused_for + at / self._speed
        self._current.arrivals.append((self._clock(), self._current.duration))
        self._current.duration += frame.duration

    async def wait_for_segments(self, count: int) -> None:
        """Wait until the agent has started speaking ``count`` times in all."""
        while len(self.segments) < count:
            self._segment_started.clear()
            await self._segment_started.wait()

    def flush(self) -> None:
        super().flush()
        seg = self._current
        if seg is None:
            return
        self._current = None
        self._flushed = seg
        if self._paused_since is None:
            self._schedule_finish(seg)

    def _played(self, seg: PlayoutSegment) -> float:
        paused = seg.paused_for
        if self._paused_since is not None:
            paused += self._clock() - self._paused_since
        return max(0.0, self._clock() - seg.started_at - paused) * self._speed

    def _schedule_finish(self, seg: PlayoutSegment) -> None:
        remaining = max(0.0, seg.duration - self._played(seg)) / self._speed

        def finished() -> None:
            self._finish = None
            self._flushed = None
            self.on_playback_finished(playback_position=seg.duration, interrupted=False)

        self._finish = asyncio.get_running_loop().call_later(remaining, finished)

    def pause(self) -> None:
        super().pause()
        seg = self.segments[-1] if self.segments else None
        if seg is None or self._paused_since is not None:
            return
        self._paused_since = self._clock()
        seg.paused_at.append(self._paused_since)
        if self._finish is not None:
            self._finish.cancel()
            self._finish = None

    def resume(self) -> None:
        super().resume()
        seg = self.segments[-1] if self.segments else None
        if seg is None or self._paused_since is None:
            return
        now = self._clock()
        seg.paused_for += now - self._paused_since
        seg.resumed_at.append(now)
        self._paused_since = None
        if self._flushed is seg:
            self._schedule_finish(seg)

    def clear_buffer(self) -> None:
        seg = self.segments[-1] if self.segments else None
        if self._finish is not None:
            self._finish.cancel()
            self._finish = None
        elif self._current is None and self._flushed is None:
            return
        self._current = None
        self._flushed = None
        if seg is None:
            return
        position = min(seg.duration, self._played(seg))
        if self._paused_since is not None:
            seg.paused_for += self._clock() - self._paused_since
            self._paused_since = None
        seg.interrupted_at = self._clock()
        self.on_playback_finished(playback_position=position, interrupted=True)

    def pcm(self) -> tuple[npt.NDArray[np.int16], int]:
        """All captured audio as one mono int16 array and its sample rate."""
        frames = [f for seg in self.segments for f in seg.frames]
        if not frames:
            return np.zeros(0, dtype=np.int16), self.sample_rate or 24000
        data = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])
        return data, frames[0].sample_rate
