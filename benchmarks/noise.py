"""Noise filter choice by word error rate: off, always DeepFilterNet, and ``auto``.

    python benchmarks/noise.py [--snr 10]

Clips are 16 espeak-ng sentences with 1.5 s of room audio before the speech and 0.5 s after
(a caller's microphone is open before they talk), mixed with noise at ``--snr`` dB
(against the speech's RMS; pink, low-passed or white) or left clean. Each clip runs through
a fresh filter in 10 ms frames at ``--rate`` (48 kHz, what a LiveKit track delivers), as a
session's input does, and is transcribed by the worker's whisper.
Prints mean WER per filter for noisy and clean clips, the ratios the acceptance reads
(auto / DeepFilterNet on noisy, auto − off on clean) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import espeak_16k, machine  # noqa: E402

RATE = 16000
SENTENCES = [
    "What time does the restaurant open tomorrow?",
    "Can you book a table for two people?",
    "What is the weather like in Paris today?",
    "Please tell me a fun fact about the ocean.",
    "I would like to change the delivery address for my order.",
    "Can you tell me a short story about a friendly robot?",
    "How much does the blue jacket cost?",
    "Please remind me to buy milk and eggs tomorrow morning.",
    "I need a taxi to the airport at six in the morning.",
    "Could you read me the latest news headlines?",
    "My internet connection keeps dropping every few minutes.",
    "Which train goes to the city center from here?",
    "Set an alarm for seven thirty please.",
    "Do you know a good recipe for tomato soup?",
    "I lost my credit card and need to block it.",
    "How many steps should I walk every day?",
]


def pink_noise(n: int, seed: int) -> np.ndarray:
    """1/f noise by shaping white noise's spectrum."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(f), n)
    return noise / np.sqrt(np.mean(noise**2))


def babble_like(n: int, seed: int) -> np.ndarray:
    """White noise through a one-pole low-pass (the test suite's noise): a rumbling room."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n)
    noise = np.empty(n)
    acc = 0.0
    for i in range(n):
        acc = 0.97 * acc + white[i]
        noise[i] = acc
    return noise / np.sqrt(np.mean(noise**2))


def white_noise(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


NOISES = {"pink": pink_noise, "lowpass": babble_like, "white": white_noise}


def clip(text: str, snr_db: float | None, seed: int, noise: str = "pink") -> np.ndarray:
    speech = espeak_16k(text).astype(np.float64)
    rms = np.sqrt(np.mean(speech**2))
    audio = np.concatenate([np.zeros(int(1.5 * RATE)), speech, np.zeros(int(0.5 * RATE))])
    if snr_db is not None:
        audio += NOISES[noise](audio.size, seed) * rms / 10 ** (snr_db / 20)
    return np.clip(audio, -32768, 32767).astype(np.int16)


def run_filter(name: str, pcm: np.ndarray, rate: int) -> np.ndarray:
    """``pcm`` (16 kHz) through a fresh filter in 10 ms frames at ``rate``; 16 kHz back."""
    from livekit import rtc

    from plugins._common.audio import resample
    from plugins.noise import create

    f = create(name)  # type: ignore[arg-type]
    if f is None:
        return pcm
    audio = resample(pcm.astype(np.float32) / 32768, RATE, rate) if rate != RATE else None
    x = pcm if audio is None else (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    per = rate // 100
    out = []
    # auto builds its filter on a thread while audio flows: frames come at a live track's
    # pace so the switch lands where it would in a call
    paced = name == "auto"
    start = time.perf_counter()
    for n, i in enumerate(range(0, x.size - per + 1, per)):
        if paced:
            time.sleep(max(0.0, start + n / 100 - time.perf_counter()))
        frame = f.process(rtc.AudioFrame(x[i : i + per].tobytes(), rate, 1, per))
        out.append(np.frombuffer(frame.data, dtype=np.int16))
    f.close()  # type: ignore[attr-defined]
    y = np.concatenate(out)
    if rate == RATE:
        return y
    return (np.clip(resample(y.astype(np.float32) / 32768, rate, RATE), -1, 1) * 32767).astype(
        np.int16
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--noise", choices=sorted(NOISES), default="pink")
    ap.add_argument(
        "--rate", type=int, default=48000, help="filter rate (a LiveKit track is 48 kHz)"
    )
    args = ap.parse_args()
    import logging

    logging.disable(logging.INFO)
    import ctranslate2

    from plugins.whisper import WhisperSTT
    from tests.audio_fixtures import wer

    stt = WhisperSTT(device="cpu")
    filters = ["off", "deepfilternet", "auto"]
    table: dict[str, dict[str, float]] = {}
    for condition, snr in (("noisy", args.snr), ("clean", None)):
        table[condition] = {}
        for name in filters:
            errors = []
            for i, text in enumerate(SENTENCES):
                # whisper falls back to sampling on hard audio: seeded, the same audio gives
                # the same words, so a difference between cells is the filter's
                ctranslate2.set_random_seed(i)
                heard = stt.transcribe_array(
                    run_filter(name, clip(text, snr, seed=i, noise=args.noise), args.rate).astype(
                        np.float32
                    )
                    / 32768
                )
                errors.append(wer(text, heard))
            table[condition][name] = round(statistics.mean(errors), 3)
    print(f"{len(SENTENCES)} sentences per cell; noisy: {args.noise} noise at {args.snr} dB SNR")
    print(f"{'clips':8}" + "".join(f"{n:>15}" for n in filters))
    for condition, row in table.items():
        print(f"{condition:8}" + "".join(f"{row[n]:>15}" for n in filters))
    dfn = table["noisy"]["deepfilternet"]
    ratio = round(table["noisy"]["auto"] / dfn, 2) if dfn else None
    delta = round(table["clean"]["auto"] - table["clean"]["off"], 3)
    print(f"noisy: auto / deepfilternet = {ratio}; clean: auto - off = {delta}")
    print(
        json.dumps(
            {
                "benchmark": "noise",
                "snr_db": args.snr,
                "wer": table,
                "noisy_auto_over_dfn": ratio,
                "clean_auto_minus_off": delta,
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
