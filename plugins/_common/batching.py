"""Opportunistic batching of inference requests from many sessions.

When the engine is idle a request runs at once, alone: nobody waits for company, so an idle
engine adds no latency. Requests that arrive while a run is in progress are gathered and
served together by the next run, as one batch. Under load a batch of N costs far less than N
single runs on a GPU (and somewhat less on a CPU), so queueing delay stops growing with
the number of sessions as fast as it would one by one.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from .executor import QUEUE_DELAYS, QueueWaitSink, in_executor, queue_wait_sink

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """One per engine and event loop; ``run_batch`` maps N requests to N results on the
    engine's thread."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], list[R]],
        executor: ThreadPoolExecutor,
        *,
        max_batch: int = 16,
    ) -> None:
        self._run_batch = run_batch
        self._executor = executor
        self._max_batch = max_batch
        # a request waiting here for the next batch is queued as surely as one waiting for
        # the engine thread: its wait is recorded under the thread's name for the load
        # function (the thread's own queue never holds more than the running batch)
        self._engine = getattr(executor, "_thread_name_prefix", "") or "engine"
        self._pending: list[tuple[T, asyncio.Future[R], int, QueueWaitSink | None]] = []
        self._runner: asyncio.Task[None] | None = None
        self.batch_sizes: list[int] = []  # recent runs, for tests, benchmarks and logs

    @property
    def waiting(self) -> int:
        """Requests waiting for the next batch (the running batch is not counted)."""
        return sum(1 for _, fut, _, _ in self._pending if not fut.done())

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._runner is not None and self._runner.get_loop() is not loop:
            # a new event loop (a test's, a restarted process loop): the old one's requests
            # can no longer be answered
            self._pending, self._runner = [], None
        future: asyncio.Future[R] = loop.create_future()
        ticket = QUEUE_DELAYS.submitted(self._engine)
        future.add_done_callback(lambda _: QUEUE_DELAYS.forget(self._engine, ticket))
        self._pending.append((item, future, ticket, queue_wait_sink()))
        if self._runner is None or self._runner.done():
            # a fresh context: the runner serves every session, and a copy of the first
            # caller's context would keep that caller's session alive as long as the runner
            self._runner = asyncio.create_task(self._run(), context=contextvars.Context())
        return await future

    async def _run(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            self._pending = self._pending[self._max_batch :]
            live = [(item, fut) for item, fut, _, _ in batch if not fut.done()]  # not cancelled
            for _, fut, ticket, sink in batch:
                if not fut.done():
                    QUEUE_DELAYS.started(self._engine, ticket, sink)
            if not live:
                continue
            self.batch_sizes = [*self.batch_sizes[-255:], len(live)]
            try:
                results = await in_executor(
                    self._executor, self._run_batch, [item for item, _ in live]
                )
            except Exception as e:  # every waiting caller learns it, none hangs
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
