"""Barge-in: how fast the agent's audio stops when the caller talks over it.

    python benchmarks/barge_in.py [--repeats 20] [--cache .cache]

One session through the real VoiceManager (room-less: a paced microphone, a recording
speaker). The agent starts a long reply; 0.5-2.5 s into it the caller says "Wait, stop
please." (espeak-ng). Repeated ``--repeats`` times; each time the agent's audio is
timestamped where it stopped (the output's pause or interruption), and two figures are taken:

- from the **speech onset** (the caller's first voiced sample, found in the signal): what
  the caller experiences, including the interruption minimum (``turn.min_speech``: shorter
  sounds, a cough, do not stop the agent);
- from the **VAD's trigger** (the session's "user speaking" event, when the VAD has heard
  that minimum): what the worker adds after deciding it was speech.

Prints p50/p95 of both with n, and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import BARGE_IN, Caller, espeak_16k, machine, summarize  # noqa: E402


async def run(args: argparse.Namespace) -> dict[str, object]:
    from agent.models.engines import Engines
    from agent.session.voice_manager import VoiceManager
    from agent.settings import Settings

    # the load benchmark's settings: short replies, a fixed seed
    settings = Settings(cache_path=Path(args.cache), llm_max_tokens=30, llm_seed=42)
    engines = Engines.load(settings)
    manager = VoiceManager(engines, instructions="Answer in one short sentence.")
    speech = espeak_16k(BARGE_IN)
    caller = await Caller.join(manager, "caller")
    try:
        for i in range(args.repeats):
            after = 0.5 + 2.0 * i / max(1, args.repeats - 1)
            await caller.barge_in(speech, after=after)
            # the agent answers the "wait, stop" turn: let that reply end before the next
            await caller.mic.play_silence(1.5)
            session = caller.attached.session
            for _ in range(150):
                if session.agent_state == "listening" and session.current_speech is None:
                    break
                await caller.mic.play_silence(0.2)
            await caller.mic.play_silence(1.0)
    finally:
        await manager.aclose()
    return {
        "barge_in_onset_ms": summarize(caller.barge_in_ms),
        "barge_in_vad_ms": summarize(caller.barge_in_vad_ms),
        "stopped": len(caller.barge_in_ms),
        "repeats": args.repeats,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--cache", default=".cache", help="CACHE_PATH with the model assets")
    args = ap.parse_args()
    import logging

    logging.disable(logging.WARNING)
    result = asyncio.run(run(args))
    print(f"{result['stopped']} of {result['repeats']} barge-ins stopped the agent")
    for key in ("barge_in_onset_ms", "barge_in_vad_ms"):
        s = result[key]
        assert isinstance(s, dict)
        print(f"{key:20} p50 {s.get('p50')}  p95 {s.get('p95')}  (n={s.get('n')})")
    print(json.dumps({"benchmark": "barge_in", **result, "machine": machine()}))


if __name__ == "__main__":
    main()
