"""Batching of end-of-turn predictions from many sessions into one model run.

Sessions ask for a prediction at each pause. When the model is idle a request runs at once,
alone (no waiting for company, so no added latency); requests that arrive while a run is in
progress are gathered and scored together in the next run, as one ONNX batch. Under load a
batch of 8 costs far less than 8 single runs (benchmarks/turn_batching.py).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from .._common.audio import Float32Array
from .._common.executor import in_executor
from .model import SmartTurnModel

MAX_BATCH = 16


class TurnBatcher:
    """One per model and event loop; shared by every session's detector."""

    def __init__(self, model: SmartTurnModel, executor: ThreadPoolExecutor | None = None) -> None:
        self._model = model
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="smart-turn")
        self._pending: list[tuple[Float32Array, asyncio.Future[float]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.batch_sizes: list[int] = []  # recent runs, for tests and benchmarks

    async def predict(self, audio16k: Float32Array) -> float:
        loop = asyncio.get_running_loop()
        if self._runner is not None and self._runner.get_loop() is not loop:
            # a new event loop (a test's, a restarted process loop): the old one's requests
            # can no longer be answered
            self._pending, self._runner = [], None
        future: asyncio.Future[float] = loop.create_future()
        self._pending.append((audio16k, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            live = [(audio, fut) for audio, fut in batch if not fut.done()]
            if not live:
                continue
            self.batch_sizes = [*self.batch_sizes[-255:], len(live)]
            try:
                probs = await in_executor(
                    self._executor, self._model.predict, [audio for audio, _ in live]
                )
            except Exception as e:  # every waiting session learns it, none hangs
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), p in zip(live, probs, strict=True):
                if not fut.done():
                    fut.set_result(p)
