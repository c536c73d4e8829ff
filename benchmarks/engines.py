"""Per-engine cost: each plugin next to its bare engine, same input, same run.

    python benchmarks/engines.py [--repeats 7] [--cache .cache] [--device cpu|cuda|auto]
                                 [--engines stt,tts,noise,turn,llm]

Prints a table and one JSON line. Figures are medians over the repeats; ``ratio`` is
plugin / raw, so 1.05 means the plugin adds 5 % to what the engine itself costs. Absolute
times depend on the machine; the ratios are what this script is for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from livekit import rtc  # noqa: E402
from livekit.agents import llm  # noqa: E402

SENTENCE = "I would like to change the delivery address for my order, please."
# first sentence >= 20 characters, so the plugin's sentence tokenizer and bare Piper cut the
# same first unit and the two sides synthesize the same audio
REPLY = "Sure, I have updated the address on your order. It will arrive on Thursday."


def espeak_16k(text: str) -> np.ndarray:
    from benchmarks.harness import cached_speech

    return cached_speech(f"espeak default sox|{text}", lambda: _espeak_16k(text))


def _espeak_16k(text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "a.wav", Path(tmp) / "b.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
        subprocess.run(
            ["sox", str(raw), "-D", "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True
        )
        import wave

        with wave.open(str(out)) as w:
            return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


def frames(pcm: np.ndarray, rate: int, ms: int = 10) -> list[rtc.AudioFrame]:
    per = rate * ms // 1000
    return [
        rtc.AudioFrame(pcm[i : i + per].tobytes(), rate, 1, pcm[i : i + per].size)
        for i in range(0, pcm.size - per + 1, per)
    ]


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


async def timed(fn: Callable[[], Awaitable[object]], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


async def bench_stt(repeats: int, device: str) -> dict[str, object]:
    from plugins.whisper import WhisperSTT

    stt = WhisperSTT(device=device)  # type: ignore[arg-type]
    pcm = espeak_16k(SENTENCE)
    audio = pcm.astype(np.float32) / 32768.0
    fr = frames(pcm, 16000)

    async def plugin() -> None:
        await stt.recognize(fr)

    async def raw() -> None:
        segs, _ = stt.whisper_model.transcribe(
            audio,
            language="en",
            beam_size=1,
            without_timestamps=True,
            condition_on_previous_text=False,
        )
        list(segs)

    await plugin()
    await raw()
    p, r = await timed(plugin, repeats), await timed(raw, repeats)
    return {
        "engine": f"stt faster-whisper tiny.en {stt.resolved.compute_type} ({stt.resolved.device})",
        "metric": f"decode {pcm.size / 16000:.1f}s of speech",
        "plugin_ms": median_ms(p),
        "raw_ms": median_ms(r),
    }


async def bench_tts(repeats: int, device: str) -> dict[str, object]:
    from plugins.piper import PiperTTS

    tts = PiperTTS(use_cuda="auto" if device == "auto" else device == "cuda")

    async def plugin() -> None:
        stream = tts.stream()
        stream.push_text(REPLY)
        stream.end_input()
        await stream.__anext__()
        await stream.aclose()

    async def raw() -> None:
        next(iter(tts.piper_voice.synthesize(REPLY)))

    await plugin()
    p, r = await timed(plugin, repeats), await timed(raw, repeats)
    return {
        "engine": f"tts piper joe-medium ({'cuda' if tts.uses_cuda else 'cpu'})",
        "metric": "time to first audio",
        "plugin_ms": median_ms(p),
        "raw_ms": median_ms(r),
    }


def raw_frame(f: object, state: object, inp: np.ndarray, out: np.ndarray) -> None:
    """One bare engine call on a 480-sample 48 kHz frame, no resampling or buffering."""
    import ctypes

    fp = ctypes.POINTER(ctypes.c_float)
    lib = f.native  # type: ignore[attr-defined]
    if f.name == "rnnoise":  # type: ignore[attr-defined]
        lib.rnnoise_process_frame(state, out.ctypes.data_as(fp), inp.ctypes.data_as(fp))
    else:
        lib.df_process_frame(state, inp.ctypes.data_as(fp), out.ctypes.data_as(fp))


async def bench_noise(repeats: int) -> list[dict[str, object]]:
    from plugins.noise import DeepFilterNetFilter, RNNoiseFilter

    rng = np.random.default_rng(0)
    pcm16 = (rng.standard_normal(16000 * 2) * 3000).astype(np.int16)
    fr = frames(pcm16, 16000)  # 200 frames of 10 ms at 16 kHz: the plugin resamples
    block48 = (rng.standard_normal(480) * 0.1).astype(np.float32)
    results = []
    for cls in (RNNoiseFilter, DeepFilterNetFilter):
        f = cls()
        state = f._new_state()
        out = np.empty(480, dtype=np.float32)
        scaled = block48 * (32768.0 if cls is RNNoiseFilter else 1.0)

        p, r = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            for x in fr:
                f.process(x)
            p.append((time.perf_counter() - t) / len(fr))
            t = time.perf_counter()
            for _ in range(len(fr)):
                raw_frame(f, state, scaled, out)
            r.append((time.perf_counter() - t) / len(fr))
        f._free_state(state)
        results.append(
            {
                "engine": f"noise {cls.name}",
                "metric": "per 10 ms frame (plugin at 16 kHz)",
                "plugin_ms": median_ms(p),
                "raw_ms": median_ms(r),
            }
        )
    return results


async def bench_turn(repeats: int, cache: Path) -> dict[str, object]:
    from plugins.smart_turn import SmartTurnDetector, SmartTurnModel
    from plugins.smart_turn.features import log_mel

    model = SmartTurnModel.from_cache(cache)
    detector = SmartTurnDetector(model)
    stream = detector.stream()
    pcm = espeak_16k(SENTENCE)
    for f in frames(pcm, 16000):
        stream.push_audio(f)
    audio = pcm.astype(np.float32) / 32768.0

    async def plugin() -> None:
        await stream.predict()

    async def raw() -> None:
        model.run_bare(log_mel(audio)[None])

    await plugin()
    p, r = await timed(plugin, repeats), await timed(raw, repeats)
    return {
        "engine": "turn smart-turn-v3.2",
        "metric": "per decision (features + inference)",
        "plugin_ms": median_ms(p),
        "raw_ms": median_ms(r),
    }


async def bench_llm(repeats: int, cache: Path) -> dict[str, object]:
    from plugins.llama import LlamaLLM

    model = LlamaLLM(cache_dir=cache, max_tokens=8)
    system = "You are a helpful voice assistant."
    counter = iter(range(10_000))

    def question() -> str:
        # a new prompt every call: llama.cpp's prefix cache would otherwise skip the prompt
        return f"Question {next(counter)}: what is the capital of France?"

    async def plugin() -> float:
        ctx = llm.ChatContext()
        ctx.add_message(role="system", content=system)
        ctx.add_message(role="user", content=question())
        t = time.perf_counter()
        stream = model.chat(chat_ctx=ctx)
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                break
        first = time.perf_counter() - t
        await stream.aclose()
        return first

    def raw() -> float:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question()}]
        t = time.perf_counter()
        gen = model.llama.create_chat_completion(messages=messages, stream=True, max_tokens=8)
        for part in gen:
            if part["choices"][0]["delta"].get("content"):
                break
        first = time.perf_counter() - t
        gen.close()
        return first

    await plugin()
    raw()
    p = [await plugin() for _ in range(repeats)]
    r = [raw() for _ in range(repeats)]
    return {
        "engine": "llm llama.cpp SmolLM2-135M Q4_1",
        "metric": "time to first token",
        "plugin_ms": median_ms(p),
        "raw_ms": median_ms(r),
    }


ENGINES = ["stt", "tts", "noise", "turn", "llm"]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("CACHE_PATH", ".cache")))
    ap.add_argument(
        "--device", choices=["auto", "cuda", "cpu"], default="cpu", help="for STT and TTS"
    )
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset")
    args = ap.parse_args()
    chosen = args.engines.split(",")
    if unknown := set(chosen) - set(ENGINES):
        ap.error(f"unknown engines {sorted(unknown)}; choose from {ENGINES}")
    rows: list[dict[str, object]] = []
    if "stt" in chosen:
        rows.append(await bench_stt(args.repeats, args.device))
    if "tts" in chosen:
        rows.append(await bench_tts(args.repeats, args.device))
    if "noise" in chosen:
        rows += await bench_noise(args.repeats)
    if "turn" in chosen:
        rows.append(await bench_turn(args.repeats, args.cache))
    if "llm" in chosen:
        rows.append(await bench_llm(args.repeats, args.cache))
    for row in rows:
        row["ratio"] = round(float(row["plugin_ms"]) / float(row["raw_ms"]), 3)  # type: ignore[arg-type]
    print(f"{'engine':34} {'metric':38} {'plugin ms':>10} {'raw ms':>10} {'ratio':>7}")
    for row in rows:
        cells = (row["engine"], row["metric"], row["plugin_ms"], row["raw_ms"], row["ratio"])
        print("{:34} {:38} {:>10} {:>10} {:>7}".format(*cells))
    from benchmarks.harness import gpu_name

    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "gpu": gpu_name(),
    }
    print(
        json.dumps(
            {"benchmark": "engines", "repeats": args.repeats, "machine": machine, "results": rows}
        )
    )


if __name__ == "__main__":
    logging_off = __import__("logging")
    logging_off.disable(logging_off.INFO)
    asyncio.run(main())
