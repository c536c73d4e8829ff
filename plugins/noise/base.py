"""A frame processor that runs a 48 kHz, 480-sample denoiser on audio of any rate.

Both engines (RNNoise, DeepFilterNet) work on 10 ms frames at 48 kHz. Each channel is
resampled up with a streaming resampler, cut into 480-sample frames, denoised, resampled
back and handed out in the caller's frame sizes. Every call returns exactly as many samples
as it received, so frame timing is kept; the price is a constant delay of about one engine
frame plus the resamplers' (silence is emitted for it at the start of the stream).

``_process`` is synchronous because LiveKit's ``FrameProcessor`` contract is; the engines
cost about 0.5 ms (RNNoise) and 1.3 ms (DeepFilterNet) per 10 ms frame on one CPU core.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import soxr
from livekit import rtc

from .._common.audio import Float32Array

ENGINE_RATE = 48000
ENGINE_FRAME = 480
# soxr "HQ" adds ~30 ms per direction in streaming mode; "LQ" keeps the delay a few ms and
# is transparent for speech band audio
RESAMPLE_QUALITY = "LQ"


class _Channel:
    """Resamplers, FIFOs and engine state of one audio channel."""

    def __init__(self, rate: int, state: Any) -> None:
        self.state = state
        self.up = (
            soxr.ResampleStream(rate, ENGINE_RATE, 1, "float32", quality=RESAMPLE_QUALITY)
            if rate != ENGINE_RATE
            else None
        )
        self.down = (
            soxr.ResampleStream(ENGINE_RATE, rate, 1, "float32", quality=RESAMPLE_QUALITY)
            if rate != ENGINE_RATE
            else None
        )
        self.pending = np.zeros(0, dtype=np.float32)  # 48 kHz samples waiting for a full frame
        self.ready = np.zeros(0, dtype=np.float32)  # output samples at the caller's rate


class Framed48kDenoiser(rtc.FrameProcessor[rtc.AudioFrame]):
    """Base for engines that denoise one 480-sample 48 kHz mono frame at a time."""

    name = "denoiser"

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._channels: list[_Channel] = []
        self._rate = 0
        self._closed = False
        self.frames_processed = 0

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value

    @abstractmethod
    def _new_state(self) -> Any:
        """Create engine state for one channel; raise ``ModelLoadError`` if impossible."""

    @abstractmethod
    def _denoise(self, state: Any, frame48k: Float32Array) -> Float32Array:
        """Denoise 480 float32 samples in [-1, 1]; return 480 samples."""

    @abstractmethod
    def _free_state(self, state: Any) -> None: ...

    def _reset(self, rate: int, num_channels: int) -> None:
        for ch in self._channels:
            self._free_state(ch.state)
        self._rate = rate
        self._channels = [_Channel(rate, self._new_state()) for _ in range(num_channels)]

    def _process(self, frame: rtc.AudioFrame) -> rtc.AudioFrame:
        if not self._enabled or self._closed or frame.samples_per_channel == 0:
            return frame
        n, channels = frame.samples_per_channel, frame.num_channels
        if frame.sample_rate != self._rate or channels != len(self._channels):
            self._reset(frame.sample_rate, channels)
        pcm = np.frombuffer(frame.data, dtype=np.int16)[: n * channels].reshape(n, channels)
        out = np.empty((n, channels), dtype=np.float32)
        for c, ch in enumerate(self._channels):
            out[:, c] = self._process_channel(ch, pcm[:, c].astype(np.float32) / 32768.0, n)
        data = (np.clip(out, -1.0, 1.0) * 32767.0).astype(np.int16)
        return rtc.AudioFrame(data.tobytes(), frame.sample_rate, channels, n)

    def _process_channel(self, ch: _Channel, x: Float32Array, n: int) -> Float32Array:
        up = ch.up.resample_chunk(x) if ch.up is not None else x
        ch.pending = np.concatenate([ch.pending, np.asarray(up, dtype=np.float32)])
        usable = (ch.pending.size // ENGINE_FRAME) * ENGINE_FRAME
        if usable:
            blocks = [
                self._denoise(ch.state, ch.pending[i : i + ENGINE_FRAME])
                for i in range(0, usable, ENGINE_FRAME)
            ]
            self.frames_processed += len(blocks)
            ch.pending = ch.pending[usable:]
            cleaned = np.concatenate(blocks)
            down = ch.down.resample_chunk(cleaned) if ch.down is not None else cleaned
            ch.ready = np.concatenate([ch.ready, np.asarray(down, dtype=np.float32)])
        if ch.ready.size < n:
            # start of stream: the engine has not produced enough yet; this silence is the
            # constant processing delay, paid once
            ch.ready = np.concatenate([np.zeros(n - ch.ready.size, dtype=np.float32), ch.ready])
        result, ch.ready = ch.ready[:n], ch.ready[n:]
        return result

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for ch in self._channels:
            self._free_state(ch.state)
        self._channels = []

    @property
    def native(self) -> Any:
        """The engine's ctypes library (benchmarks call it on bare frames)."""
        return getattr(self, "_lib", None)

    def process(self, frame: rtc.AudioFrame) -> rtc.AudioFrame:
        """Public entry for callers outside RoomIO (in-process sessions, tests)."""
        return self._process(frame)

    def close(self) -> None:
        self._close()
