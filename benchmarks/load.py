"""Load: N concurrent voice sessions through the real VoiceManager, ours against a baseline.

    python benchmarks/load.py --sessions 8 [--turns 2] [--cache .cache]

Each session is a simulated caller (espeak-ng speech played in real time into a room-less
session) that takes ``--turns`` spoken turns and then talks over a long reply once. The
same callers run against two pipelines, each in a fresh process so memory figures are its
own:

- ``ours``: what the worker runs (streaming whisper with interims and manual flush, Smart
  Turn end-of-turn detection, early first TTS chunk, clip cache, backchannel rule, resilient
  LLM);
- ``baseline``: livekit-agents defaults (VAD end of turn, default endpointing and
  interruption) with a naive whisper STT, the framework's ``StreamAdapter`` decoding each
  VAD segment whole, and Piper without the cache or early chunk. Same models, same LLM.

``--room`` runs the callers through LiveKit rooms instead (benchmarks/room_load.py: real
clients, the real worker, the LiveKit test server, figures taken at the client) next to the
room-less ``shared`` run of the same layout, and prints room/room-less ratios.

``--shared`` adds a third run, ``shared``: ours laid out as the worker runs it with
``INFERENCE_MODE=shared``, each session in its own job process and every model in one
``python -m agent inference`` process that batches their requests.

Reports p50/p95/p99 of voice-to-voice latency (end of user speech to first agent audio),
STT final latency, end-of-turn delay, LLM time to first token, TTS time to first audio,
barge-in latency (from the user's speech onset and from the VAD's trigger to the agent's
audio stopping) and agent frame jitter; CPU
seconds and RSS per session; errors. A table and one JSON line with ours/baseline ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (  # noqa: E402
    BARGE_IN,
    QUESTIONS,
    Caller,
    Resources,
    espeak_16k,
    machine,
    summarize,
)

METRICS = [
    "voice_to_voice_ms",
    "stt_final_ms",
    "eou_ms",
    "llm_ttft_ms",
    "tts_ttfb_ms",
    "barge_in_ms",
    "barge_in_vad_ms",
    # per turn, the final transcript's delay minus the end-of-turn decision's: above 0, the
    # decision waited for the words
    "final_after_eou_ms",
    "jitter_ms",
]


MIN_TURNS = 30


def build_engines(pipeline: str, cache: Path, address: str = "") -> Any:
    from agent.models.engines import Engines
    from agent.settings import Settings
    from plugins.whisper import WhisperSTT

    settings = Settings(cache_path=cache, llm_max_tokens=30, llm_seed=42)
    if pipeline == "shared":
        return Engines.remote(settings, address)
    engines = Engines.load(settings)
    if pipeline == "ours":
        return engines

    class BaselineEngines(Engines):
        """The same models as ours; its sessions are livekit-agents' defaults around a
        naive whisper (``baseline_session``)."""

        def __init__(self) -> None:
            super().__init__(
                settings,
                stt=engines.stt,
                piper=engines.piper,
                llm=engines.llm,
                turn_model=engines.turn_model,
                clip_store=None,
            )
            # StreamAdapter (added by the session for a non-streaming STT) decodes each VAD
            # segment whole; one shared model like ours
            self.naive_stt = WhisperSTT(
                streaming=False, model_instance=engines.stt.whisper_model, device="cpu"
            )

    return BaselineEngines()


def baseline_session(engines: Any, config: Any = None, **_: Any) -> Any:
    """livekit-agents' defaults: silero's VAD as it loads, VAD end of turn, default
    endpointing and interruption; the naive whisper, Piper without cache or early chunk."""
    from livekit.agents import AgentSession
    from livekit.plugins import silero

    return AgentSession(
        vad=silero.VAD.load(), stt=engines.naive_stt, llm=engines.llm, tts=engines.piper
    )


def baseline_agent(instructions: str, chat_ctx: Any) -> Any:
    """A plain livekit-agents Agent: no backchannel rule, no context budget."""
    from livekit.agents import Agent

    return Agent(instructions=instructions, chat_ctx=chat_ctx)


async def run_pipeline(
    pipeline: str,
    sessions: int,
    turns: int,
    cache: Path,
    *,
    address: str = "",
    first: int = 0,
    wait_for_go: bool = False,
) -> dict[str, Any]:
    from agent.session.voice_manager import VoiceManager

    engines = build_engines(pipeline, cache, address)
    speech = [espeak_16k(q) for q in QUESTIONS]
    interrupt = espeak_16k(BARGE_IN)
    # the baseline's sessions are built its own way (VoiceManager's session seam)
    extra: dict[str, Any] = (
        {"sessions": baseline_session, "agent_factory": baseline_agent}
        if pipeline == "baseline"
        else {}
    )
    manager = VoiceManager(engines, instructions="Answer in one short sentence.", **extra)
    # one warm-up turn so first-use costs (ONNX arenas, llama KV) are not billed to sessions
    warm = await Caller.join(manager, "warm-up")
    await warm.turn(speech[0])
    await manager.detach("warm-up")
    if wait_for_go:  # every job process warmed: start the callers together
        print('{"warm": true}', flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    base = Resources.now()
    rng = random.Random(7)
    arrivals = [rng.uniform(0, 2.0) for _ in range(first + sessions)][first:]
    peak_rss = base.rss_mb

    async def caller(i: int) -> Caller:
        await asyncio.sleep(arrivals[i])  # callers do not arrive in lockstep
        c = await Caller.join(manager, f"caller-{i}")
        for t in range(turns):
            await c.turn(speech[(i + t) % len(speech)])
        after = manager.engines.settings.aec_warmup_s + 0.5
        await c.barge_in(interrupt, after=after)
        return c

    async def watch_memory() -> None:
        nonlocal peak_rss
        while True:
            peak_rss = max(peak_rss, Resources.now().rss_mb)
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_memory())
    started = time.monotonic()
    try:
        callers = await asyncio.gather(*(caller(i) for i in range(sessions)))
        if wait_for_go:  # let the other job processes finish before this one leaves
            print('{"done": true}', flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    finally:
        watcher.cancel()
        await manager.aclose()
    elapsed = time.monotonic() - started
    end = Resources.now()
    values: dict[str, list[float]] = {m: [] for m in METRICS}
    errors = 0
    for c in callers:
        for r in c.results:
            errors += r.error is not None
            for m in METRICS:
                v = getattr(r, m, None)
                if v is not None:
                    values[m].append(v)
            if r.stt_final_ms is not None and r.eou_ms is not None:
                values["final_after_eou_ms"].append(r.stt_final_ms - r.eou_ms)
        values["barge_in_ms"].extend(c.barge_in_ms)
        values["barge_in_vad_ms"].extend(c.barge_in_vad_ms)
        errors += 1 - len(c.barge_in_ms)  # a barge-in that did not stop the agent
    return {
        "pipeline": pipeline,
        "sessions": sessions,
        "turns": sum(len(c.results) for c in callers),
        "errors": errors,
        "duration_s": round(elapsed, 1),
        **{m: summarize(values[m]) for m in METRICS},
        "values": values,
        "cpu_s_per_session": round((end.cpu_s - base.cpu_s) / sessions, 2),
        "rss_mb_base": base.rss_mb,
        "rss_mb_per_session": round((peak_rss - base.rss_mb) / sessions, 1),
    }


def run_shared(args: argparse.Namespace) -> dict[str, Any]:
    """``args.sessions`` job processes with one session each, all on one inference process;
    the callers start together once every process is warm."""
    import psutil

    from agent.inference.host import private_address
    from agent.models.shared.client import wait_ready

    address = private_address()
    env = {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
    env.setdefault("LOG_LEVEL", "WARNING")
    server_env = {**env, "CACHE_PATH": str(args.cache), "LLM_MAX_TOKENS": "30", "LLM_SEED": "42"}
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "inference", "--address", address], env=server_env
    )
    jobs: list[subprocess.Popen[str]] = []
    try:
        wait_ready(address, 300, alive=lambda: server.poll() is None)
        for i in range(args.sessions):
            cmd = [sys.executable, __file__, "--only", "shared", "--sessions", "1"]
            cmd += ["--turns", str(args.turns), "--cache", str(args.cache)]
            cmd += ["--address", address, "--first", str(i)]
            jobs.append(
                subprocess.Popen(
                    cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
                )
            )

        def until(job: subprocess.Popen[str], marker: str) -> list[str]:
            assert job.stdout is not None
            seen = []
            for line in job.stdout:
                seen.append(line)
                if line.startswith(marker):
                    return seen
            raise SystemExit(f"shared job process exited with {job.wait()}")

        def tell(job: subprocess.Popen[str]) -> None:
            assert job.stdin is not None
            job.stdin.write("go\n")
            job.stdin.flush()

        for job in jobs:
            until(job, '{"warm"')
        server_cpu = sum(psutil.Process(server.pid).cpu_times()[:2])
        started = time.monotonic()
        for job in jobs:
            tell(job)
        for job in jobs:
            until(job, '{"done"')
        elapsed = time.monotonic() - started
        server_cpu = sum(psutil.Process(server.pid).cpu_times()[:2]) - server_cpu
        results = []
        for job in jobs:
            tell(job)
            lines = [x for x in until(job, '{"pipeline"') if x.startswith('{"pipeline"')]
            results.append(json.loads(lines[-1]))
    finally:
        for job in jobs:
            if job.poll() is None:
                job.kill()
        server.terminate()
        server.wait(30)
    values: dict[str, list[float]] = {m: [] for m in METRICS}
    for r in results:
        for m in METRICS:
            values[m].extend(r["values"][m])
    job_cpu = sum(r["cpu_s_per_session"] for r in results)
    return {
        "pipeline": "shared",
        "sessions": args.sessions,
        "turns": sum(r["turns"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "duration_s": round(elapsed, 1),
        **{m: summarize(values[m]) for m in METRICS},
        "values": values,
        "cpu_s_per_session": round((job_cpu + server_cpu) / args.sessions, 2),
        "rss_mb_per_session": None,  # a process each: see benchmarks/memory.py
    }


def run_script(script: list[str], args: argparse.Namespace, what: str) -> dict[str, Any]:
    """Run ``script`` in a fresh process with the callers' arguments; its JSON result."""
    cmd = [sys.executable, *script, "--sessions", str(args.sessions), "--turns", str(args.turns)]
    cmd += ["--cache", str(args.cache)]
    env = {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
    env.setdefault("LOG_LEVEL", "WARNING")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    lines = [line for line in out.stdout.splitlines() if line.startswith('{"pipeline"')]
    if out.returncode != 0 or not lines:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-3000:])
        raise SystemExit(f"{what} run failed (exit {out.returncode})")
    return dict(json.loads(lines[-1]))


def run_child(pipeline: str, args: argparse.Namespace) -> dict[str, Any]:
    return run_script([__file__, "--only", pipeline], args, pipeline)


def run_rooms(args: argparse.Namespace) -> None:
    """The same callers through LiveKit rooms and without, in this run."""
    room = run_script([str(Path(__file__).with_name("room_load.py"))], args, "room")
    roomless = run_shared(args)
    print(f"{args.sessions} session(s), {args.turns} turns + 1 barge-in each")
    print(f"{'metric':22}{'room p50/p95/p99':>26}{'room-less p50/p95/p99':>26}{'p50 ratio':>11}")
    ratios: dict[str, float | None] = {}
    for m in ("voice_to_voice_ms", "barge_in_ms"):
        r, b = room[m], roomless[m]
        ratios[m] = ratio(r["p50"], b["p50"])
        print(
            f"{m:22}{r['p50']}/{r['p95']}/{r['p99']} (n={r['n']})".ljust(48)
            + f"{b['p50']}/{b['p95']}/{b['p99']} (n={b['n']})".rjust(26)
            + f"{ratios[m]!s:>11}"
        )
    print(f"{'errors':22}{room['errors']!s:>26}{roomless['errors']!s:>26}")
    for run in (room, roomless):
        run.pop("values", None)
        run.pop("machine", None)
    print(
        json.dumps(
            {
                "benchmark": "load_room",
                "sessions": args.sessions,
                "room": room,
                "roomless": roomless,
                "ratio_p50_room_over_roomless": ratios,
                "machine": machine(),
            }
        )
    )


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument(
        "--turns",
        type=int,
        default=None,
        help="spoken turns per session (default: enough for 30 per pipeline, at least 2)",
    )
    parser.add_argument("--cache", type=Path, default=Path(".cache"))
    parser.add_argument(
        "--shared",
        action="store_true",
        help="also run ours with one job process per session on a shared inference process",
    )
    parser.add_argument(
        "--room",
        action="store_true",
        help="callers through LiveKit rooms (the test server), against the room-less shared run",
    )
    parser.add_argument("--only", choices=["ours", "baseline", "shared"], help=argparse.SUPPRESS)
    parser.add_argument("--address", default="", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.turns is None:  # percentiles need samples: >= 30 turns per pipeline
        args.turns = max(2, -(-MIN_TURNS // args.sessions))
    if args.only:
        result = asyncio.run(
            run_pipeline(
                args.only,
                args.sessions,
                args.turns,
                args.cache,
                address=args.address,
                first=args.first,
                wait_for_go=args.only == "shared",
            )
        )
        print(json.dumps(result))
        return

    if args.room:
        run_rooms(args)
        return
    ours, baseline = run_child("ours", args), run_child("baseline", args)
    shared = run_shared(args) if args.shared else None
    print(f"{args.sessions} session(s), {args.turns} turns + 1 barge-in each")
    print(f"{'metric':22}{'ours p50/p95/p99':>26}{'baseline p50/p95/p99':>26}{'p95 ratio':>11}")
    ratios: dict[str, float | None] = {}
    for m in METRICS:
        o, b = ours[m], baseline[m]
        ratios[m] = ratio(o["p95"], b["p95"])

        def fmt(s: dict[str, Any]) -> str:
            return f"{s['p50']}/{s['p95']}/{s['p99']} (n={s['n']})"

        print(f"{m:22}{fmt(o):>26}{fmt(b):>26}{ratios[m]!s:>11}")
    for key in ("cpu_s_per_session", "rss_mb_per_session", "errors"):
        ratios[key] = ratio(ours[key], baseline[key])
        print(f"{key:22}{ours[key]!s:>26}{baseline[key]!s:>26}{ratios[key]!s:>11}")
    shared_ratios: dict[str, float | None] = {}
    if shared is not None:
        print(f"\nshared inference process, one job process per session{'p95 ratio':>20}")
        for m in METRICS:
            s, b = shared[m], baseline[m]
            shared_ratios[m] = ratio(s["p95"], b["p95"])
            line = f"{s['p50']}/{s['p95']}/{s['p99']} (n={s['n']})"
            print(f"{m:22}{line:>26}{'':>26}{shared_ratios[m]!s:>11}")
        for key in ("cpu_s_per_session", "errors"):
            shared_ratios[key] = ratio(shared[key], baseline[key])
            print(f"{key:22}{shared[key]!s:>26}{'':>26}{shared_ratios[key]!s:>11}")
    for run in (ours, baseline, shared):
        if run is not None:
            run.pop("values", None)
    print(
        json.dumps(
            {
                "benchmark": "load",
                "sessions": args.sessions,
                "ours": ours,
                "baseline": baseline,
                "ratio_p95_ours_over_baseline": ratios,
                "shared": shared,
                "ratio_p95_shared_over_baseline": shared_ratios or None,
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
