"""Soak: voice sessions started and ended in a loop for a bounded time, in one process.

    python benchmarks/soak.py [--duration 120] [--at-once 2] [--cache .cache]

Each round attaches ``--at-once`` callers to one VoiceManager, each takes a spoken turn
(real VAD, turn detector, STT, LLM, TTS), and detaches. RSS, open files, threads and asyncio
tasks are read after the warm-up rounds (everything loaded, allocator heaps grown) and at the
end; the run fails (exit 1) when any grew past its bound. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import QUESTIONS, Caller, Resources, espeak_16k, machine  # noqa: E402

# growth allowed between the warm snapshot and the end; a leak of one object per session
# shows up over a few dozen sessions as more than these
BOUNDS = {"rss_mb": 40.0, "fds": 4, "threads": 2, "tasks": 2}


async def soak(
    duration: float, at_once: int, cache: Path, warmup_rounds: int, playout_speed: float
) -> dict[str, object]:
    from agent.models.engines import Engines
    from agent.session.voice_manager import VoiceManager
    from agent.settings import Settings

    # a fixed seed: a question gets the same reply each round, so after the warm-up no new
    # input length can grow an engine's memory arena to a new peak (that is not a leak)
    settings = Settings(cache_path=cache, llm_max_tokens=30, llm_seed=42)
    engines = Engines.load(settings)
    manager = VoiceManager(engines, instructions="Answer in one short sentence.")
    speech = [espeak_16k(q) for q in QUESTIONS]
    sessions = turns = errors = rounds = 0
    warm: Resources | None = None
    trace: list[float] = []  # RSS after each round
    started = time.monotonic()
    try:
        while rounds < warmup_rounds + 1 or time.monotonic() - started < duration:
            callers = await asyncio.gather(
                *(
                    Caller.join(manager, f"caller-{sessions + i}", playout_speed=playout_speed)
                    for i in range(at_once)
                )
            )
            results = await asyncio.gather(
                *(c.turn(speech[(sessions + i) % len(speech)]) for i, c in enumerate(callers))
            )
            turns += len(results)
            errors += sum(r.error is not None for r in results)
            for caller in callers:
                await manager.detach(caller.identity)
            sessions += at_once
            rounds += 1
            del callers, results
            gc.collect()
            trace.append(Resources.now().rss_mb)
            if rounds == warmup_rounds:
                # against the warm-up's peak: a transient high during warm-up (a busy
                # machine, heaps still growing) is not growth
                warm = Resources.now()
                warm.rss_mb = max(trace)
    finally:
        await manager.aclose()
    gc.collect()
    await asyncio.sleep(0.5)  # let closed sessions' last callbacks run
    end = Resources.now()
    assert warm is not None
    growth = {k: round(getattr(end, k) - getattr(warm, k), 1) for k in BOUNDS}
    return {
        "benchmark": "soak",
        "duration_s": round(time.monotonic() - started, 1),
        "sessions": sessions,
        "turns": turns,
        "errors": errors,
        "warm": warm.__dict__,
        "end": end.__dict__,
        "growth": growth,
        "bounds": BOUNDS,
        "rss_mb_by_round": trace,
        "ok": errors == 0 and all(growth[k] <= BOUNDS[k] for k in BOUNDS),
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds to run")
    parser.add_argument("--at-once", type=int, default=2, help="sessions per round")
    parser.add_argument("--cache", type=Path, default=Path(".cache"))
    parser.add_argument(
        "--warmup-rounds", type=int, default=3, help="rounds before the first snapshot"
    )
    parser.add_argument(
        "--playout-speed",
        type=float,
        default=1.0,
        help="callers hear replies this many times faster than real time (more sessions a minute)",
    )
    args = parser.parse_args()
    if "MALLOC_ARENA_MAX" not in os.environ:
        # as deployed (Dockerfile, systemd unit): two glibc heaps for the engine threads
        os.execve(
            sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_ARENA_MAX": "2"}
        )
    report = asyncio.run(
        soak(args.duration, args.at_once, args.cache, args.warmup_rounds, args.playout_speed)
    )
    print(f"{'':10}{'after warm-up':>15}{'end':>10}{'growth':>10}{'bound':>8}")
    for key, bound in BOUNDS.items():
        w, e = report["warm"][key], report["end"][key]  # type: ignore[index]
        print(f"{key:10}{w:>15}{e:>10}{report['growth'][key]:>10}{bound:>8}")  # type: ignore[index]
    print(
        f"{report['sessions']} sessions, {report['turns']} turns, {report['errors']} errors "
        f"in {report['duration_s']} s"
    )
    print(json.dumps(report))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
