"""The load function reports full before the inference queue delay passes its budget."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.worker.load import (
    QUEUE_HEADROOM,
    LoadSignals,
    published_model_bytes,
    published_queue_delay,
)
from plugins._common.executor import QUEUE_DELAYS, in_executor

BUDGET = 0.2
THRESHOLD = 0.99  # LOAD_THRESHOLD's default


def test_each_signal_alone_can_make_the_worker_full() -> None:
    assert LoadSignals(active_jobs=1, capacity=4).load() == 0.25
    assert LoadSignals(active_jobs=4, capacity=4).load() == 1.0
    idle: dict[str, Any] = {"active_jobs": 0, "capacity": 4, "queue_budget_s": BUDGET}
    assert LoadSignals(**idle, queue_delay_s=BUDGET * QUEUE_HEADROOM).load() == 1.0
    assert LoadSignals(**idle, queue_delay_s=0.05).load() < 0.5
    assert LoadSignals(**idle, gpu_memory_fraction=0.95, gpu_memory_limit=0.9).load() == 1.0
    assert LoadSignals(**idle, gpu_memory_fraction=None).parts().keys() == {"jobs", "queue"}
    assert LoadSignals(**idle, model_bytes=3 << 30, model_budget_bytes=2 << 30).load() == 1.0
    assert LoadSignals(**idle, model_bytes=1 << 30, model_budget_bytes=4 << 30).load() == 0.25


async def test_full_is_reported_before_a_queued_call_waits_past_the_budget() -> None:
    """A real engine thread saturated by a burst: the load, sampled as the queue builds,
    reaches the threshold before the first call that waited longer than the budget starts."""
    executor = ThreadPoolExecutor(1, thread_name_prefix="saturated")
    submitted: list[float] = []
    started: list[float] = []

    def work() -> None:
        started.append(time.monotonic())
        time.sleep(0.05)

    first_full: float | None = None
    calls = []
    for _ in range(12):  # the last one waits about 11 x 50 ms
        submitted.append(time.monotonic())
        calls.append(in_executor(executor, work))
    while not all(c.done() for c in calls):
        delay = QUEUE_DELAYS.delay("saturated")
        load = LoadSignals(0, 4, queue_delay_s=delay, queue_budget_s=BUDGET).load()
        if load >= THRESHOLD and first_full is None:
            first_full = time.monotonic()
        await asyncio.sleep(0.005)
    await asyncio.gather(*calls)
    executor.shutdown()

    waits = [s - q for q, s in zip(submitted, started, strict=True)]
    over = next(i for i, w in enumerate(waits) if w > BUDGET)
    assert first_full is not None
    assert first_full < started[over], (first_full - started[over], waits)
    # and once the burst is over and the window has passed, the worker is free again
    assert QUEUE_DELAYS.delay("saturated", window_s=0.0) < 0.05


def test_the_main_process_reads_the_delay_job_processes_publish(tmp_path: Path) -> None:
    """The load function runs in the worker's main process; job processes publish."""
    script = (
        "from agent.obs.metrics import INFERENCE_QUEUE_DELAY, MODELS_RESIDENT_BYTES\n"
        "INFERENCE_QUEUE_DELAY.labels('whisper').set(0.42)\n"
        "MODELS_RESIDENT_BYTES.labels('voice').set(63e6)\n"
        "import time; print('ready', flush=True); time.sleep(30)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    job = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE)
    try:
        assert job.stdout is not None and job.stdout.readline().strip() == b"ready"
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
        try:
            assert published_queue_delay() == 0.42
            assert published_model_bytes() == 63_000_000  # the model manager's voices
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    finally:
        job.kill()
        job.wait()


async def test_requests_waiting_for_the_next_batch_count_as_queue_delay() -> None:
    """Batched engines (whisper, Smart Turn) hold waiting requests in the batcher, not in
    the thread's queue; those waits must reach the load function too."""
    from plugins._common.batching import Batcher

    def slow_batch(items: list[int]) -> list[int]:
        time.sleep(0.3)
        return items

    batcher: Batcher[int, int] = Batcher(
        slow_batch, ThreadPoolExecutor(1, thread_name_prefix="batched"), max_batch=1
    )
    calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    await asyncio.sleep(0.2)
    # the second and third requests wait while the first batch runs
    assert QUEUE_DELAYS.delay("batched") >= 0.15
    assert await asyncio.gather(*calls) == [0, 1, 2]
    # the third waited two batches
    assert QUEUE_DELAYS.delay("batched", window_s=5.0) >= 0.5
    batcher.shutdown()


async def test_the_queued_gauge_counts_requests_waiting_in_a_batcher(tmp_path: Path) -> None:
    """``voice_inference_queued`` read only the executor queue: with the model busy and
    four pauses waiting in the turn batcher it said 0."""
    import threading

    import numpy as np

    from agent.models.engines import Engines
    from agent.settings import Settings

    release = threading.Event()

    class BusyModel:
        def predict(self, utterances: list[Any]) -> list[float]:
            release.wait(10)
            return [0.5] * len(utterances)

    engines = Engines(Settings(cache_path=tmp_path), turn_model=BusyModel(), clip_store=None)  # type: ignore[arg-type]
    clip = np.zeros(1600, dtype=np.float32)
    first = asyncio.create_task(engines.turn_batcher.predict(clip))
    await asyncio.sleep(0.1)  # the first one runs on the model thread
    waiting = [asyncio.create_task(engines.turn_batcher.predict(clip)) for _ in range(4)]
    await asyncio.sleep(0.05)
    try:
        assert engines.queued()["turn"] == 4
    finally:
        release.set()
    assert await asyncio.gather(first, *waiting) == [0.5] * 5
    assert engines.queued()["turn"] == 0
