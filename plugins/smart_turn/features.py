"""Whisper-style log-mel features for Smart Turn v3, in numpy.

The model takes the last 8 s of 16 kHz audio (zero-padded at the front when shorter),
normalized to zero mean and unit variance, as an 80 x 800 log-mel spectrogram. faster-whisper's
numpy ``FeatureExtractor`` computes exactly the whisper transform, so it is reused here rather
than written again.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._common.audio import Float32Array

SAMPLE_RATE = 16000
WINDOW_S = 8
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_S
N_MELS = 80
N_FRAMES = 800


@functools.cache
def _extractor() -> Any:
    # imported where the model runs only: a job process using the shared inference process
    # never loads faster-whisper
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor(feature_size=N_MELS, sampling_rate=SAMPLE_RATE, chunk_length=WINDOW_S)


def last_window(audio: Float32Array) -> Float32Array:
    """The last 8 s of ``audio``, front-padded with silence to exactly 8 s."""
    if audio.size >= WINDOW_SAMPLES:
        return audio[-WINDOW_SAMPLES:].astype(np.float32, copy=False)
    return np.pad(audio.astype(np.float32, copy=False), (WINDOW_SAMPLES - audio.size, 0))


def log_mel(audio: Float32Array) -> Float32Array:
    """Features of shape (80, 800) for one utterance of 16 kHz mono audio."""
    x = last_window(audio)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    feats = _extractor()(x, padding=0)
    return np.asarray(feats[:, :N_FRAMES], dtype=np.float32)
