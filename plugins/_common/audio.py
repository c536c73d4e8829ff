"""Conversions between LiveKit audio frames and the float arrays the engines take."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import soxr
from livekit import rtc

Float32Array = npt.NDArray[np.float32]


def frame_to_float(frame: rtc.AudioFrame) -> Float32Array:
    """Interleaved int16 samples of one frame as float32 in [-1, 1], shape (samples, channels)."""
    pcm = np.frombuffer(frame.data, dtype=np.int16)
    channels = max(1, frame.num_channels)
    usable = (pcm.size // channels) * channels
    return (pcm[:usable].reshape(-1, channels).astype(np.float32)) / 32768.0


def to_mono(samples: Float32Array) -> Float32Array:
    """Average the channels of a (samples, channels) array."""
    if samples.ndim == 1:
        return samples
    if samples.shape[1] == 1:
        return samples[:, 0]
    mono: Float32Array = samples.mean(axis=1, dtype=np.float32)
    return mono


def resample(samples: Float32Array, from_rate: int, to_rate: int) -> Float32Array:
    """Resample a mono signal with soxr (high quality, no state between calls)."""
    if from_rate == to_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    out = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def frames_to_mono(frames: Iterable[rtc.AudioFrame], rate: int) -> Float32Array:
    """Join frames of any rate and channel count into one mono float32 signal at ``rate``.

    Frames are grouped by their sample rate so a stream that changes rate midway is handled.
    """
    chunks: list[Float32Array] = []
    pending: list[Float32Array] = []
    pending_rate: int | None = None
    for frame in frames:
        if frame.samples_per_channel == 0:
            continue
        if pending_rate is not None and frame.sample_rate != pending_rate:
            chunks.append(resample(np.concatenate(pending), pending_rate, rate))
            pending = []
        pending_rate = frame.sample_rate
        pending.append(to_mono(frame_to_float(frame)))
    if pending and pending_rate is not None:
        chunks.append(resample(np.concatenate(pending), pending_rate, rate))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks)


def float_to_pcm16(samples: Float32Array) -> bytes:
    """Clip to [-1, 1] and encode as little-endian int16 bytes."""
    clipped = np.clip(samples, -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()


def is_voiced(samples: Float32Array, level_dbfs: float) -> bool:
    """Whether a chunk of float samples is at least ``level_dbfs`` loud (RMS)."""
    return samples.size > 0 and float(np.sqrt(np.mean(samples**2))) >= 10 ** (level_dbfs / 20.0)


# speech starts where the signal first rises above this (well under the -40 dBFS a listener
# notices, so no onset is lost)
ONSET_LEVEL_DBFS = -50.0
# kept before that onset, faded in, so the cut is never a click
ONSET_LEAD_S = 0.005


def trim_leading_silence(pcm: bytes, rate: int) -> bytes:
    """16-bit mono PCM without the near-silence a voice puts before its first sound.

    A synthesizer starts each clip with 30-60 ms of quiet (Piper's joe voice: 0-62 ms on
    short sentences); at the start of a reply that is time the caller waits for nothing.
    ``ONSET_LEAD_S`` of it stays, faded in from zero. Silence throughout is returned whole
    (a pause is meant to be heard)."""
    samples = np.frombuffer(pcm, dtype=np.int16)
    level = 10 ** (ONSET_LEVEL_DBFS / 20.0) * 32768
    loud = np.flatnonzero(np.abs(samples) > level)
    if loud.size == 0:
        return pcm
    start = max(0, int(loud[0]) - int(ONSET_LEAD_S * rate))
    if start == 0:
        return pcm
    out = samples[start:].copy()
    ramp = min(int(ONSET_LEAD_S * rate), out.size)
    out[:ramp] = (out[:ramp].astype(np.float32) * np.linspace(0.0, 1.0, ramp)).astype(np.int16)
    return out.tobytes()
