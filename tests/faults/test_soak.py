"""A short run of ``benchmarks/soak.py``: sessions come and go, nothing accumulates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sessions_in_a_loop_leave_memory_files_threads_and_tasks_bounded(cache_dir: Path) -> None:
    run = subprocess.run(
        # replies heard 4x faster: more sessions come and go in the same time
        [
            sys.executable,
            "benchmarks/soak.py",
            "--duration",
            "20",
            "--playout-speed",
            "4",
            "--cache",
            str(cache_dir),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["errors"] == 0 and report["sessions"] >= 8, report
    for key, bound in report["bounds"].items():
        assert report["growth"][key] <= bound, (key, report)
    assert run.returncode == 0


async def test_ended_sessions_leave_nothing_attached_to_the_shared_engines(engines) -> None:
    """Each session's voice chain subscribes to the process's shared voices; a session that
    ends must let go, or every session ever held stays in memory (found by the soak)."""
    import gc

    from agent.session.voice_manager import SessionIO, VoiceManager
    from agent.sim.io import PacedAudioInput, RecordingAudioOutput

    manager = VoiceManager(engines, instructions="Answer briefly.")
    shared = [engines.tts, engines.fallback_voice()]
    before = [sum(map(len, voice._events.values())) for voice in shared]
    for i in range(10):
        await manager.attach(f"caller-{i}", SessionIO(PacedAudioInput(), RecordingAudioOutput()))
        await manager.detach(f"caller-{i}")
    await manager.aclose()
    gc.collect()
    after = [sum(map(len, voice._events.values())) for voice in shared]
    assert after == before
    alive = [o for o in gc.get_objects() if type(o).__name__ == "AgentSession"]
    assert not alive, f"{len(alive)} ended sessions still referenced"
