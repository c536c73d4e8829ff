"""Memory per additional session: models in every job process vs one shared inference process.

A LiveKit worker runs each job in its own process. This starts job processes the way the
worker's setup builds them, each running one session through the real VoiceManager (one
voice turn, so every lazily sized buffer and ONNX arena is allocated), in both modes, in
one run:

- ``process``: every job process loads its own STT, TTS, turn detector and LLM
  (``INFERENCE_MODE=process``, ``Engines.load``);
- ``shared``: one ``python -m agent inference`` process holds the models and every job
  process is built with ``Engines.remote`` (``INFERENCE_MODE=shared``);
- ``thread``: the shared inference process, and every job a thread of one process
  (``JOB_EXECUTOR=thread``, livekit-agents' thread executor), each with its own event loop
  and its own connection to the inference process, as that executor runs jobs.

Job processes are added one at a time; after the first and after the last the memory of
the whole tree (job processes + the inference process) is read. Per additional session:
(total with N - total with 1) / (N - 1). RSS counts a shared library page in every process
that maps it; PSS divides each shared page between the processes that map it, so summed
PSS is what the machine really spends. Both are printed.

    python benchmarks/memory.py --sessions 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _tree_memory(pids: list[int]) -> dict[str, float]:
    rss = pss = 0
    for pid in pids:
        info = psutil.Process(pid).memory_full_info()
        rss += info.rss
        pss += info.pss
    return {"rss_mb": round(rss / 1e6, 1), "pss_mb": round(pss / 1e6, 1)}


def thread_child(address: str, cache: str) -> None:
    """One process hosting jobs as threads: each ``add`` line on stdin starts one more job
    (its own event loop, engines and session, one voice turn), then reports."""
    import threading

    from agent.models.engines import Engines
    from agent.session.voice_manager import VoiceManager
    from agent.settings import Settings
    from benchmarks.harness import QUESTIONS, Caller, espeak_16k

    settings = Settings.from_env(
        {"CACHE_PATH": cache, "LLM_SEED": "42", "LLM_MAX_TOKENS": "30", "CACHE_MAX_BYTES": "0"}
    )
    stop = threading.Event()

    def job(ready: threading.Event, result: dict[str, Any]) -> None:
        async def run() -> None:
            manager = VoiceManager(Engines.remote(settings, address), instructions="Be brief.")
            caller = await Caller.join(manager, "caller")
            turn = await caller.turn(espeak_16k(QUESTIONS[0]))
            result["error"] = turn.error
            ready.set()
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)
            await manager.aclose()

        asyncio.run(run())

    threads = []
    for line in sys.stdin:
        if line.strip() != "add":
            break
        ready, result = threading.Event(), {}
        thread = threading.Thread(target=job, args=(ready, result), daemon=True)
        thread.start()
        threads.append(thread)
        ready.wait(300)
        print(json.dumps({"ready": True, "error": result.get("error")}), flush=True)
    stop.set()
    for thread in threads:
        thread.join(30)


def measure_threads(sessions: int, cache: str) -> dict[str, Any]:
    from agent.inference.host import private_address
    from agent.models.shared.client import wait_ready

    address = private_address()
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "LOG_LEVEL": "WARNING", "CACHE_PATH": cache}
    env.update(LLM_MAX_TOKENS="30", LLM_SEED="42")
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "inference", "--address", address], env=env, cwd=ROOT
    )
    wait_ready(address, 300, alive=lambda: server.poll() is None)
    host = subprocess.Popen(
        [sys.executable, __file__, "--child", "thread", "--address", address, "--cache", cache],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MALLOC_ARENA_MAX": "2", "LOG_LEVEL": "WARNING"},
        cwd=ROOT,
    )
    assert host.stdin is not None and host.stdout is not None
    reports = []
    try:

        def add() -> None:
            host.stdin.write("add\n")  # type: ignore[union-attr]
            host.stdin.flush()  # type: ignore[union-attr]
            for line in host.stdout:  # type: ignore[union-attr]
                if line.startswith('{"ready"'):
                    reports.append(json.loads(line))
                    return
            raise RuntimeError(f"the job host exited with {host.wait()}")

        add()
        first = _tree_memory([server.pid, host.pid])
        for _ in range(sessions - 1):
            add()
        last = _tree_memory([server.pid, host.pid])
        inference = _tree_memory([server.pid])
        job_host = _tree_memory([host.pid])
    finally:
        host.stdin.close()
        host.wait(60)
        server.terminate()
        server.wait(30)
    n = sessions - 1
    return {
        "first_session": first,
        "all_sessions": last,
        "per_additional_session_rss_mb": round((last["rss_mb"] - first["rss_mb"]) / n, 1),
        "per_additional_session_pss_mb": round((last["pss_mb"] - first["pss_mb"]) / n, 1),
        "job_process_rss_mb_median": job_host["rss_mb"],
        "inference_process": inference,
        "errors": sum(1 for r in reports if r["error"]),
        "heavy_modules_in_job_processes": [],
    }


async def child(mode: str, address: str, cache: str) -> None:
    """One job process: build the engines as the worker's setup does, run one session's
    voice turn, report, then hold still until told to exit."""
    from agent.models.engines import Engines
    from agent.session.voice_manager import VoiceManager
    from agent.settings import Settings
    from benchmarks.harness import QUESTIONS, Caller, espeak_16k

    settings = Settings.from_env(
        {"CACHE_PATH": cache, "LLM_SEED": "42", "LLM_MAX_TOKENS": "30", "CACHE_MAX_BYTES": "0"}
    )
    engines = Engines.remote(settings, address) if mode == "shared" else Engines.load(settings)
    manager = VoiceManager(engines, instructions="Answer in one short sentence.")
    caller = await Caller.join(manager, "caller")
    result = await caller.turn(espeak_16k(QUESTIONS[0]))
    heavy = [m for m in ("faster_whisper", "ctranslate2", "llama_cpp") if m in sys.modules]
    print(json.dumps({"ready": True, "error": result.error, "heavy_modules": heavy}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    await manager.aclose()


def start_child(
    mode: str, address: str, cache: str
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", mode, "--address", address, "--cache", cache],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith('{"ready"'):
            return proc, json.loads(line)
    raise RuntimeError(f"job process ({mode}) exited with {proc.wait()}")


def measure(mode: str, sessions: int, cache: str) -> dict[str, Any]:
    from agent.inference.host import private_address
    from agent.models.shared.client import wait_ready

    address = private_address()
    server = None
    pids: list[int] = []
    if mode == "shared":
        env = {**os.environ, "MALLOC_ARENA_MAX": "2", "LOG_LEVEL": "WARNING", "CACHE_PATH": cache}
        env.update(LLM_MAX_TOKENS="30", LLM_SEED="42")
        server = subprocess.Popen(
            [sys.executable, "-m", "agent", "inference", "--address", address], env=env, cwd=ROOT
        )
        wait_ready(address, 300, alive=lambda: server.poll() is None)
        pids.append(server.pid)
    children: list[subprocess.Popen[str]] = []
    reports: list[dict[str, Any]] = []
    try:
        proc, report = start_child(mode, address, cache)
        children.append(proc)
        reports.append(report)
        first = _tree_memory([*pids, proc.pid])
        for _ in range(sessions - 1):
            proc, report = start_child(mode, address, cache)
            children.append(proc)
            reports.append(report)
        last = _tree_memory([*pids, *(c.pid for c in children)])
        per_job = [_tree_memory([c.pid]) for c in children]
        inference = _tree_memory([server.pid]) if server else None
    finally:
        for c in children:
            assert c.stdin is not None
            c.stdin.close()
        for c in children:
            c.wait(60)
        if server is not None:
            server.terminate()
            server.wait(30)
    n = sessions - 1
    return {
        "first_session": first,
        "all_sessions": last,
        "per_additional_session_rss_mb": round((last["rss_mb"] - first["rss_mb"]) / n, 1),
        "per_additional_session_pss_mb": round((last["pss_mb"] - first["pss_mb"]) / n, 1),
        "job_process_rss_mb_median": statistics.median(m["rss_mb"] for m in per_job),
        "inference_process": inference,
        "errors": sum(1 for r in reports if r["error"]),
        "heavy_modules_in_job_processes": sorted({m for r in reports for m in r["heavy_modules"]}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=6, help="job processes per mode (>= 2)")
    parser.add_argument("--cache", default=os.environ.get("CACHE_PATH", str(ROOT / ".cache")))
    parser.add_argument("--child", choices=["process", "shared", "thread"], help=argparse.SUPPRESS)
    parser.add_argument("--address", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "thread":
        thread_child(args.address, args.cache)
        return
    if args.child:
        asyncio.run(child(args.child, args.address, args.cache))
        return
    if args.sessions < 2:
        parser.error("--sessions must be at least 2")
    from benchmarks.harness import machine

    results = {mode: measure(mode, args.sessions, args.cache) for mode in ("process", "shared")}
    results["thread"] = measure_threads(args.sessions, args.cache)
    p, s, t = results["process"], results["shared"], results["thread"]
    ratio_rss = p["per_additional_session_rss_mb"] / s["per_additional_session_rss_mb"]
    ratio_pss = p["per_additional_session_pss_mb"] / s["per_additional_session_pss_mb"]
    print(f"{'':34} {'per-process models':>20} {'shared inference':>18} {'jobs as threads':>16}")
    rows = [
        ("RSS per additional session, MB", "per_additional_session_rss_mb"),
        ("PSS per additional session, MB", "per_additional_session_pss_mb"),
        ("job process RSS (median), MB", "job_process_rss_mb_median"),
    ]
    for label, key in rows:
        print(f"{label:34} {p[key]:>20} {s[key]:>18} {t[key]:>16}")
    for label, key in (("total RSS/PSS, 1 session", "first_session"),
                       (f"total RSS/PSS, {args.sessions} sessions", "all_sessions")):  # fmt: skip
        print(
            f"{label:34} {p[key]['rss_mb']:>10}/{p[key]['pss_mb']:<9}"
            f" {s[key]['rss_mb']:>9}/{s[key]['pss_mb']:<8}"
        )
    print(
        f"inference process: {s['inference_process']}; errors: {p['errors']} / {s['errors']}"
        f" / {t['errors']}"
    )
    shared_to_thread = s["per_additional_session_rss_mb"] / max(
        t["per_additional_session_rss_mb"], 0.1
    )
    print(f"RSS per added room, process executor / thread executor: {shared_to_thread:.2f}")
    summary = {
        "benchmark": "memory",
        "sessions": args.sessions,
        "machine": machine(),
        "process": p,
        "shared": s,
        "thread": t,
        "rss_per_session_ratio": round(ratio_rss, 2),
        "rss_per_room_process_to_thread": round(shared_to_thread, 2),
        "pss_per_session_ratio": round(ratio_pss, 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
