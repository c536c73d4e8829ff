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
        [sys.executable, "benchmarks/soak.py", "--duration", "50", "--cache", str(cache_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["errors"] == 0 and report["sessions"] >= 10, report
    for key, bound in report["bounds"].items():
        assert report["growth"][key] <= bound, (key, report)
    assert run.returncode == 0
