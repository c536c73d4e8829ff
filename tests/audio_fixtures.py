"""Real speech and noise for tests: espeak-ng speaks, sox converts. Nothing is recorded in git."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import jiwer
import numpy as np
import numpy.typing as npt
from livekit import rtc

Int16 = npt.NDArray[np.int16]


def require_tools() -> None:
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"tests need {missing}: apt-get install espeak-ng sox")


def speak(
    text: str, *, rate: int = 16000, channels: int = 1, voice: str = "en-us", wpm: int = 150
) -> Int16:
    """espeak-ng speech resampled by sox; returns interleaved int16 samples."""
    require_tools()
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True)
        subprocess.run(
            ["sox", str(raw), "-D", "-r", str(rate), "-c", str(channels), "-b", "16", str(out)],
            check=True,
        )
        return read_wav(out)[0]


def read_wav(path: Path) -> tuple[Int16, int, int]:
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()
        return data, w.getframerate(), w.getnchannels()


def write_wav(path: Path, samples: Int16, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def to_frames(samples: Int16, rate: int, channels: int = 1, ms: int = 10) -> list[rtc.AudioFrame]:
    per = rate * ms // 1000
    frames = []
    for start in range(0, samples.size // channels, per):
        chunk = samples[start * channels : (start + per) * channels]
        n = chunk.size // channels
        frames.append(rtc.AudioFrame(chunk.tobytes(), rate, channels, n))
    return frames


def silence(seconds: float, rate: int, channels: int = 1) -> Int16:
    return np.zeros(int(seconds * rate) * channels, dtype=np.int16)


def noise_like(n: int, seed: int = 7) -> npt.NDArray[np.float64]:
    """Pink-ish noise: white noise through a one-pole low-pass, which speech filters find hard."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n)
    out = np.empty(n)
    acc = 0.0
    for i in range(n):  # small n in tests; clarity over speed
        acc = 0.97 * acc + white[i]
        out[i] = acc
    return out / np.max(np.abs(out))


def mix_at_snr(speech: Int16, noise: npt.NDArray[np.float64], snr_db: float) -> Int16:
    s = speech.astype(np.float64)
    n = noise[: s.size]
    p_s, p_n = np.mean(s**2), np.mean(n**2)
    n = n * np.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))
    return np.clip(s + n, -32768, 32767).astype(np.int16)


def si_sdr(reference: npt.NDArray[np.float64], estimate: npt.NDArray[np.float64]) -> float:
    """Scale-invariant signal-to-distortion ratio in dB."""
    ref = reference - reference.mean()
    est = estimate - estimate.mean()
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + 1e-12)
    target = alpha * ref
    residual = est - target
    return float(10 * np.log10((np.sum(target**2) + 1e-12) / (np.sum(residual**2) + 1e-12)))


_PUNCT = re.compile(r"[^a-z0-9' ]+")


def normalize(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not hyp:
        return 1.0
    return float(jiwer.wer(ref, hyp))


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate after the same normalization as :func:`wer` (for replies too
    short for a word rate to mean much)."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not hyp:
        return 1.0
    return float(jiwer.cer(ref, hyp))


def trim_silence(samples: Int16, threshold: int = 30) -> Int16:
    """Cut leading and trailing near-silence so the clip's end is the end of speech."""
    voiced = np.nonzero(np.abs(samples) > threshold)[0]
    if voiced.size == 0:
        return samples[:0]
    return samples[voiced[0] : voiced[-1] + 1]
