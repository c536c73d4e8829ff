"""Clip cache: time to first audio on a hit vs a miss, and lookups per second by processes.

    python benchmarks/cache.py [--repeats 9] [--lookups 2000] [--processes 1,2,4]

1. Time to first audio of ``CachedTTS`` around the real Piper voice: a miss (a sentence
   never seen, so Piper synthesizes it) against a hit (the same sentence again), medians
   over ``--repeats`` different sentences. ``ratio`` is miss / hit.
2. Lookups per second: N processes each doing ``--lookups`` ``get()`` calls of random keys
   of a filled store (real files, the shared SQLite index), all started together. The
   figure is the total rate; ``scaling`` is the rate with N processes / the rate with one.

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cache.clip_file import Clip  # noqa: E402
from cache.store import ClipStore  # noqa: E402
from cache.tts import CachedTTS  # noqa: E402

SENTENCES = [
    "Your order number {n} has been shipped this morning.",
    "I have booked table {n} for you at seven o'clock tonight.",
    "Room {n} is ready, and breakfast is served until ten.",
]


async def first_audio_s(voice: CachedTTS, text: str) -> float:
    # consume the whole clip: stopping early is an interruption, and is not cached
    start = time.perf_counter()
    elapsed = None
    async with voice.synthesize(text) as stream:
        async for _ in stream:
            if elapsed is None:
                elapsed = time.perf_counter() - start
    await voice.wait_stored()
    assert elapsed is not None
    return elapsed


async def hit_vs_miss(root: Path, repeats: int) -> dict[str, float]:
    from plugins.piper import PiperTTS

    voice = CachedTTS(PiperTTS(use_cuda=False), ClipStore(root, max_bytes=1 << 30))
    await first_audio_s(voice, "Warming up the voice once.")
    misses, hits = [], []
    for i in range(repeats):
        text = SENTENCES[i % len(SENTENCES)].format(n=100 + i)
        misses.append(await first_audio_s(voice, text))
        hits.append(await first_audio_s(voice, text))
    miss, hit = statistics.median(misses), statistics.median(hits)
    return {
        "miss_ms": round(miss * 1000, 3),
        "hit_ms": round(hit * 1000, 3),
        "ratio": round(miss / hit, 1),
    }


def _lookups(root: str, keys: list[str], count: int, start_at: float, out: mp.Queue) -> None:
    store = ClipStore(Path(root), max_bytes=1 << 30)
    rng = random.Random(os.getpid())
    while time.time() < start_at:  # start together so the processes really contend
        time.sleep(0.001)
    t0 = time.perf_counter()
    for _ in range(count):
        assert store.get(rng.choice(keys)) is not None
    out.put(time.perf_counter() - t0)


def lookup_rate(root: Path, processes: int, lookups: int, keys: list[str]) -> float:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    start_at = time.time() + 2.0
    procs = [
        ctx.Process(target=_lookups, args=(str(root), keys, lookups, start_at, out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    durations = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    return processes * lookups / max(durations)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--processes", default="1,2,4")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        ttfa = asyncio.run(hit_vs_miss(Path(tmp) / "tts", args.repeats))

        root = Path(tmp) / "lookups"
        store = ClipStore(root, max_bytes=1 << 30)
        clip = Clip(pcm=os.urandom(2 * 22050 * 2), sample_rate=22050, num_channels=1)  # 2 s
        keys = [f"{i:064x}" for i in range(200)]
        for k in keys:
            store.put(k, clip)
        rates = {n: lookup_rate(root, n, args.lookups, keys) for n in counts}

    base = rates[counts[0]]
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}")
    print(
        f"time to first audio   miss {ttfa['miss_ms']:9.1f} ms   hit {ttfa['hit_ms']:7.2f} ms"
        f"   miss/hit {ttfa['ratio']:.0f}x   (median of {args.repeats})"
    )
    print("processes   lookups/s   scaling")
    for n in counts:
        print(f"{n:9d}   {rates[n]:9.0f}   {rates[n] / base:7.2f}")
    print(
        json.dumps(
            {
                "benchmark": "cache",
                "machine": f"{platform.machine()}/{os.cpu_count()}cpu",
                "time_to_first_audio": ttfa,
                "lookups_per_s": {str(n): round(r) for n, r in rates.items()},
                "lookup_scaling": {str(n): round(r / base, 2) for n, r in rates.items()},
                "clip_bytes": len(clip.pcm),
            }
        )
    )


if __name__ == "__main__":
    main()
