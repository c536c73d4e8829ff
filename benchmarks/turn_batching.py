"""End-of-turn predictions of many sessions at once: batched vs one by one.

    python benchmarks/turn_batching.py [--sessions 8] [--repeats 9] [--cache .cache]

N sessions ask the Smart Turn model for a prediction at the same moment (the worst case:
pauses that coincide). Baseline: each request is its own model run on the model's thread,
in turn (what a per-session detector does). Batched: TurnBatcher, one ONNX run for the
requests pending together. Reports the time until the last session has its answer (p95 of
the per-request latency is the same figure here), medians over the repeats, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import QUESTIONS, espeak_16k, machine  # noqa: E402
from plugins._common.executor import in_executor  # noqa: E402
from plugins.smart_turn import SmartTurnModel, TurnBatcher  # noqa: E402


async def one_by_one(
    model: SmartTurnModel, clips: list[np.ndarray], pool: ThreadPoolExecutor
) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(in_executor(pool, model.predict, [c]) for c in clips))
    return (time.perf_counter() - start) * 1000


async def batched(batcher: TurnBatcher, clips: list[np.ndarray]) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(batcher.predict(c) for c in clips))
    return (time.perf_counter() - start) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--cache", type=Path, default=Path(".cache"))
    args = parser.parse_args()
    model = SmartTurnModel.from_cache(args.cache)
    clips = [
        espeak_16k(QUESTIONS[i % len(QUESTIONS)]).astype(np.float32) / 32768.0
        for i in range(args.sessions)
    ]
    pool = ThreadPoolExecutor(1)
    batcher = TurnBatcher(model, pool)
    await one_by_one(model, clips, pool)  # warm-up: ONNX arenas for both batch shapes
    await batched(batcher, clips)
    serial_ms, batch_ms = [], []
    for _ in range(args.repeats):  # interleaved, so drift on a noisy machine hits both
        serial_ms.append(await one_by_one(model, clips, pool))
        batch_ms.append(await batched(batcher, clips))
    result = {
        "benchmark": "turn_batching",
        "sessions": args.sessions,
        "one_by_one_ms": round(statistics.median(serial_ms), 1),
        "batched_ms": round(statistics.median(batch_ms), 1),
        "ratio_batched_over_one_by_one": round(
            statistics.median(batch_ms) / statistics.median(serial_ms), 2
        ),
        "batch_sizes": sorted(set(batcher.batch_sizes)),
        "repeats": args.repeats,
        "machine": machine(),
    }
    print(f"{args.sessions} simultaneous predictions, until the last answer")
    print(f"(median of {args.repeats}): one by one {result['one_by_one_ms']} ms, ")
    print(f"batched {result['batched_ms']} ms, ratio {result['ratio_batched_over_one_by_one']}")
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
