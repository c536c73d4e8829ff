"""Running engine calls in a thread pool without losing the caller's context, and
measuring how long calls wait there.

The wait between submitting a call and a thread starting it is the inference queue delay:
the first thing that grows when an engine is saturated, well before latency figures show it.
The worker's load function reads it (agent/worker/load.py) to stop taking jobs in time.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Who is told of each wait: a session (its turn spans show where its caller's time went),
# or the inference process answering one request (it sends its waits back with the
# answer). Called with (engine, when the wait began as wall-clock time, seconds), possibly
# from an engine thread.
QueueWaitSink = Callable[[str, float, float], None]
_SINK: contextvars.ContextVar[QueueWaitSink | None] = contextvars.ContextVar(
    "queue_wait_sink", default=None
)


def set_queue_wait_sink(sink: QueueWaitSink | None) -> None:
    """Tell ``sink`` of every queue wait of calls made from this context (and the tasks
    and threads it starts)."""
    _SINK.set(sink)


def queue_wait_sink() -> QueueWaitSink | None:
    return _SINK.get()


def report_queue_wait(engine: str, began: float, seconds: float) -> None:
    """A wait measured elsewhere (in the inference process), told to this context's sink."""
    sink = _SINK.get()
    if sink is not None:
        sink(engine, began, seconds)


class QueueDelays:
    """Per-engine queue waits: recent finished waits and the age of calls still waiting."""

    def __init__(self, keep: int = 256) -> None:
        self._lock = threading.Lock()
        self._done: dict[str, deque[tuple[float, float]]] = {}
        self._waiting: dict[str, dict[int, float]] = {}
        self._ids = itertools.count()
        self._keep = keep

    def submitted(self, engine: str) -> int:
        ticket = next(self._ids)
        with self._lock:
            self._waiting.setdefault(engine, {})[ticket] = time.monotonic()
        return ticket

    def started(self, engine: str, ticket: int, sink: QueueWaitSink | None = None) -> float:
        """The call's wait is over: recorded, told to ``sink``, and returned."""
        now = time.monotonic()
        with self._lock:
            since = self._waiting.get(engine, {}).pop(ticket, now)
            self._done.setdefault(engine, deque(maxlen=self._keep)).append((now, now - since))
        if sink is not None:
            sink(engine, time.time() - (now - since), now - since)
        return now - since

    def forget(self, engine: str, ticket: int) -> None:
        """A call cancelled before it started: it waits no more."""
        with self._lock:
            self._waiting.get(engine, {}).pop(ticket, None)

    def delay(self, engine: str, window_s: float = 5.0) -> float:
        """The longest wait seen in the last ``window_s``, or the age of the oldest call
        still waiting if that is longer (a stuck queue reports no finished waits)."""
        now = time.monotonic()
        with self._lock:
            recent = [w for t, w in self._done.get(engine, ()) if now - t <= window_s]
            oldest = min(self._waiting.get(engine, {}).values(), default=now)
        return max([now - oldest, *recent])

    def engines(self) -> list[str]:
        with self._lock:
            return sorted(set(self._done) | set(self._waiting))


QUEUE_DELAYS = QueueDelays()


def in_executor(
    executor: Executor, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> asyncio.Future[T]:
    """``loop.run_in_executor`` that carries the caller's contextvars into the thread (the
    session's log context, for one), as ``asyncio.to_thread`` does for the default pool,
    and records the call's queue wait under the executor's thread name prefix."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    engine = getattr(executor, "_thread_name_prefix", "") or "engine"
    ticket = QUEUE_DELAYS.submitted(engine)
    sink = _SINK.get()

    def run() -> T:
        QUEUE_DELAYS.started(engine, ticket, sink)
        return ctx.run(fn, *args, **kwargs)

    future = loop.run_in_executor(executor, run)
    future.add_done_callback(lambda _: QUEUE_DELAYS.forget(engine, ticket))
    return future
