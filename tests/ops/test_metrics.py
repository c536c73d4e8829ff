"""/metrics in the main process shows what a separate job process measured."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.auth.test_limits_processes import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
HISTOGRAMS = (
    "voice_stt_final_latency_seconds",
    "voice_end_of_turn_delay_seconds",
    "voice_llm_ttft_seconds",
    "voice_tts_ttfb_seconds",
    "voice_to_voice_latency_seconds",
    "voice_barge_in_latency_seconds",
)


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else -1.0


@pytest.mark.slow
def test_job_process_latencies_reach_the_main_process_metrics(
    tmp_path: Path, cache_dir: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), CACHE_PATH=str(cache_dir))
    job = subprocess.run(
        [sys.executable, str(REPO / "tests" / "ops" / "job_process.py"), str(cache_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    assert "interrupted" in job.stdout.split()[0], job.stdout

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "agent", "serve"],
        cwd=REPO,
        env=dict(env, HTTP_HOST="127.0.0.1", HTTP_PORT=str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        server.terminate()
        server.wait(20)
    for name in HISTOGRAMS:
        assert sample(text, f"{name}_count") >= 1, name
    assert sample(text, "voice_sessions_started_total") >= 1
    assert sample(text, "voice_active_sessions") == 0  # the job process's session ended
    assert "clip_cache_hits" in text
