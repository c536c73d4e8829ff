"""The front of a room-less session's audio path: whatever a source sends, the session sees
10 ms mono frames at one sample rate.

A room's track reaches the session through RoomIO, whose ``rtc.AudioStream`` already
delivers a constant format. Sources outside a room (``simulate``, the console, the load
harness, tests) can send anything: empty frames, single samples, 8 channels, a sample rate
that changes midway. livekit-agents' STT stream refuses a second sample rate outright and
its VAD drops such frames, which ends recognition for the rest of the session; so every
frame is normalised here, once, before the noise filter, VAD and STT see it.

Memory is bounded: at most one partial output frame and the resampler's few ms of state are
kept between frames, however long the stream runs.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import soxr
from livekit import rtc
from livekit.agents.voice.io import AudioInput

from agent.log import logger
from agent.obs.metrics import AUDIO_FRAMES_DROPPED
from plugins._common.audio import Float32Array, frame_to_float, to_mono

SESSION_SAMPLE_RATE = 16000  # what VAD, STT and the turn detector all consume
FRAME_MS = 10
MAX_CHANNELS = 64
MAX_SAMPLE_RATE = 384_000


class FrameFilter(Protocol):
    """A noise filter as a session outside RoomIO calls it (plugins.noise, the session's
    switchable slot)."""

    def process(self, frame: rtc.AudioFrame) -> rtc.AudioFrame: ...


class NormalizedAudioInput(AudioInput):
    """Downmixes, resamples and re-frames a source, then applies an optional noise filter."""

    def __init__(
        self,
        source: AudioInput,
        noise_filter: FrameFilter | None = None,
        *,
        sample_rate: int = SESSION_SAMPLE_RATE,
    ) -> None:
        super().__init__(label=f"Normalized({source.label})", source=source)
        self._filter = noise_filter
        self._rate = sample_rate
        self._per_frame = sample_rate * FRAME_MS // 1000
        self._resampler: soxr.ResampleStream | None = None
        self._source_rate = 0
        self._pending = np.zeros(0, dtype=np.float32)
        self.frames_dropped = 0

    async def __anext__(self) -> rtc.AudioFrame:
        assert self.source is not None
        while self._pending.size < self._per_frame:
            frame = await self.source.__anext__()
            self._pending = np.concatenate([self._pending, self._convert(frame)])
        out, self._pending = self._pending[: self._per_frame], self._pending[self._per_frame :]
        pcm = (np.clip(out, -1.0, 1.0) * 32767.0).astype(np.int16)
        normalized = rtc.AudioFrame(pcm.tobytes(), self._rate, 1, self._per_frame)
        return self._filter.process(normalized) if self._filter is not None else normalized

    def _convert(self, frame: rtc.AudioFrame) -> Float32Array:
        """Mono float samples at the session rate; nothing for an empty or impossible frame."""
        if frame.samples_per_channel == 0:
            return np.zeros(0, dtype=np.float32)
        rate_ok = 0 < frame.sample_rate <= MAX_SAMPLE_RATE
        if not (rate_ok and 0 < frame.num_channels <= MAX_CHANNELS):
            self.frames_dropped += 1
            AUDIO_FRAMES_DROPPED.inc()
            if self.frames_dropped == 1:
                logger.warning(
                    "audio frame dropped: impossible format",
                    extra={"sample_rate": frame.sample_rate, "channels": frame.num_channels},
                )
            return np.zeros(0, dtype=np.float32)
        mono = to_mono(frame_to_float(frame))
        if frame.sample_rate != self._source_rate:
            # a new source rate (a device change): a fresh resampler; the old one's few
            # milliseconds of tail are not worth a click
            self._source_rate = frame.sample_rate
            self._resampler = (
                soxr.ResampleStream(frame.sample_rate, self._rate, 1, "float32", quality="HQ")
                if frame.sample_rate != self._rate
                else None
            )
        if self._resampler is None:
            return mono
        return np.asarray(self._resampler.resample_chunk(mono), dtype=np.float32)
