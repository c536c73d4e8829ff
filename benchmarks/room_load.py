"""Load through LiveKit rooms: what callers hear, measured at the client.

    python benchmarks/load.py --room --sessions 4 [--turns 2]

N callers, each a real ``livekit.rtc`` client in a room of its own, talk to the real worker
(``python -m agent start``, shared inference process, one job process per room) through the
LiveKit test server (tests/livekit_server/): their speech goes out as WebRTC/Opus, the
agent's reply comes back on the caller's ``agent-<identity>`` track. Each caller asks the
load benchmark's questions, then talks over a long reply once.

Voice-to-voice is measured at the client: from the last voiced sample the caller sent to the
first audible frame of the reply it received. Barge-in: from the first voiced sample of the
interruption to the end of the agent's audio as received. Everything runs inside a private
network namespace (tests/private_network.py; root needed), since WebRTC media cannot use
loopback. Prints a table and one JSON line; ``load.py --room`` adds the room-less run of the
same layout and the ratios.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# first, while this process has one thread (numpy's pool, the SDK's runtime come later)
from tests.private_network import enter_private_network  # noqa: E402

NETWORK_PROBLEM = enter_private_network()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import psutil  # noqa: E402

from benchmarks.harness import BARGE_IN, QUESTIONS, espeak_16k, machine, summarize  # noqa: E402
from tests.livekit_server import LiveKitTestServer  # noqa: E402
from tests.private_network import SERVER_ADDRESS  # noqa: E402
from tests.room.caller import RoomCaller  # noqa: E402
from tests.room.worker import (  # noqa: E402
    API_KEY,
    API_SECRET,
    Worker,
    caller_token,
    dispatch,
    join,
    start_worker,
    stop_worker,
)

TENANT = "bench"
# the packaged model answers this one in several sentences: a reply long enough to talk over
LONG_QUESTION = "What do you like to do on weekends?"
METRICS = ["voice_to_voice_ms", "barge_in_ms"]
# the worker's own view of the same turns (its /metrics): where the time went
WORKER_STAGES = {
    "eou_ms": "voice_end_of_turn_delay_seconds",
    "stt_final_ms": "voice_stt_final_latency_seconds",
    "llm_ttft_ms": "voice_llm_ttft_seconds",
    "tts_ttfb_ms": "voice_tts_ttfb_seconds",
    "voice_to_voice_ms": "voice_to_voice_latency_seconds",
}


async def worker_stage_means(worker: Worker) -> dict[str, float | None]:
    """Mean of each stage histogram on the worker's /metrics, in ms."""
    means: dict[str, float | None] = {}
    for key, name in WORKER_STAGES.items():
        total = await worker.metric(f"{name}_sum")
        count = await worker.metric(f"{name}_count")
        means[key] = round(1000 * total / count, 1) if count else None
    return means


async def one_hop_ms(server: LiveKitTestServer, repeats: int = 5) -> list[float]:
    """Client → test server → client, for one burst of speech: the first voiced sample sent
    to its first audible frame at a listener. A voice-to-voice figure through a room crosses
    the server twice (the caller's speech in, the reply out)."""
    room = f"{TENANT}-hop"
    speaker = await join(server, "hop-speaker", room)
    listener = RoomCaller("hop-listener")
    await listener.connect(server.url, caller_token("hop-listener", room))
    heard: list[float] = []
    try:
        publication = await listener.wait_for(
            lambda: next(
                (
                    pub
                    for p in listener.room.remote_participants.values()
                    for pub in p.track_publications.values()
                ),
                None,
            ),
            within=30,
        )
        publication.set_subscribed(True)
        track = await listener.wait_for(lambda: listener.heard.get("microphone"), within=30)
        burst = espeak_16k("Hello there.")
        for _ in range(repeats):
            started, _ = await speaker.say(burst)
            first = await listener.wait_for(lambda t=started: track.first_audible(t), within=10)
            heard.append((first - started) * 1000)
            await asyncio.sleep(0.5)
    finally:
        await speaker.leave()
        await listener.leave()
    return heard


async def one_caller(
    server: LiveKitTestServer, worker: Worker, index: int, turns: int, go: asyncio.Event
) -> dict[str, Any]:
    room = f"{TENANT}-room-{index}"
    caller = await join(server, f"caller-{index}", room)
    values: dict[str, list[float]] = {m: [] for m in METRICS}
    errors = 0
    try:
        await dispatch(worker, TENANT, room)
        await caller.wait_for(caller.reply_track, within=180)
        await go.wait()
        for turn in range(turns):
            question = QUESTIONS[(index + turn) % len(QUESTIONS)]
            result = await caller.ask(espeak_16k(question))
            if result.voice_to_voice_ms is None:
                errors += 1
            else:
                values["voice_to_voice_ms"].append(result.voice_to_voice_ms)
        ms = await caller.barge_in(espeak_16k(LONG_QUESTION), espeak_16k(BARGE_IN), after_s=0.6)
        if ms is None:
            errors += 1
        else:
            values["barge_in_ms"].append(ms)
    finally:
        await caller.leave()
    return {"values": values, "errors": errors}


def _role(process: psutil.Process) -> str:
    cmdline = " ".join(process.cmdline())
    if "agent inference" in cmdline or "inference" in process.name():
        return "inference"
    if "forkserver" in cmdline or "multiprocessing" in cmdline:
        return "job processes"
    return "main"


async def run(sessions: int, turns: int, cache: Path) -> dict[str, Any]:
    server = LiveKitTestServer(API_KEY, API_SECRET, host=SERVER_ADDRESS, departure_timeout_s=2)
    await server.start()
    hop = await one_hop_ms(server)
    worker = await start_worker(
        server,
        cache,
        WORKER_CAPACITY=str(max(4, sessions)),
        NUM_IDLE_PROCESSES=str(sessions),
        LOG_LEVEL="WARNING",
        # the room-less shared run's LLM settings
        LLM_MAX_TOKENS="30",
        LLM_SEED="42",
        LLM_TEMPERATURE="0.6",
    )
    go = asyncio.Event()
    try:
        callers = [
            asyncio.create_task(one_caller(server, worker, i, turns, go)) for i in range(sessions)
        ]
        # every caller in its room with its agent before anyone speaks
        await asyncio.gather(
            *(
                server.wait_for_event("agent_joined", f"{TENANT}-room-{i}", 300)
                for i in range(sessions)
            )
        )
        await asyncio.sleep(2.0)
        tree = [psutil.Process(worker.proc.pid), *psutil.Process(worker.proc.pid).children(True)]
        cpu_before = sum(sum(p.cpu_times()[:2]) for p in tree)
        each_before = {p.pid: sum(p.cpu_times()[:2]) for p in tree}
        harness_before = sum(psutil.Process().cpu_times()[:2])
        started = time.monotonic()
        go.set()
        results = await asyncio.gather(*callers)
        elapsed = time.monotonic() - started
        cpu = sum(sum(p.cpu_times()[:2]) for p in tree if p.is_running()) - cpu_before
        harness_cpu = sum(psutil.Process().cpu_times()[:2]) - harness_before
        by_role: dict[str, float] = {}
        for p in tree:
            if p.is_running():
                role = _role(p)
                used = sum(p.cpu_times()[:2]) - each_before.get(p.pid, 0.0)
                by_role[role] = round(by_role.get(role, 0.0) + used, 1)
        stages = await worker_stage_means(worker)
    finally:
        await stop_worker(worker)
        await server.aclose()
    values = {m: [v for r in results for v in r["values"][m]] for m in METRICS}
    return {
        "pipeline": "room",
        "sessions": sessions,
        "turns": sum(len(r["values"]["voice_to_voice_ms"]) for r in results),
        "errors": sum(r["errors"] for r in results),
        "duration_s": round(elapsed, 1),
        **{m: summarize(values[m]) for m in METRICS},
        "values": values,
        "worker_cpu_s_per_session": round(cpu / sessions, 2),
        "worker_cpu_s_by_process": by_role,
        # the test server and the clients share this process: CPU a deployment spends
        # elsewhere (LiveKit's SFU forwards without transcoding; callers are remote)
        "harness_cpu_s": round(harness_cpu, 1),
        "worker_stage_mean_ms": stages,
        "one_hop_ms": summarize(hop),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(".cache"))
    args = parser.parse_args()
    if NETWORK_PROBLEM is not None:
        raise SystemExit(f"the room benchmark needs a private network namespace: {NETWORK_PROBLEM}")
    result = asyncio.run(run(args.sessions, args.turns, args.cache))
    for m in METRICS:
        s = result[m]
        print(f"{m:22}{s['p50']}/{s['p95']}/{s['p99']} (n={s['n']})")
    print(
        f"errors {result['errors']}, worker CPU s per session {result['worker_cpu_s_per_session']}"
    )
    print(f"the worker's own stage means (ms): {result['worker_stage_mean_ms']}")
    print(f"one hop through the test server (ms): {result['one_hop_ms']}")
    print(json.dumps({**result, "machine": machine()}))


if __name__ == "__main__":
    main()
