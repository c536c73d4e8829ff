"""The model manager: which optional models are resident in this process, and for how long.

A worker may offer more voices (and models) than its memory holds at once. Sessions ask for
a model by id with :meth:`ModelManager.use`; a resident model is handed over at once, one
that is not is loaded on the manager's own loader thread (never on an engine's serving
thread), so other sessions keep being served while it loads; concurrent requests for the
same model share one load.

Residency rules:

- at most ``cap`` models are resident; when a load makes one too many, the least recently
  used *idle* model is unloaded, never one in use, and never one younger than
  ``min_residency_s`` (a model that would be unloaded right after its load would thrash);
  when none may go, the manager stays over the cap until one may (and says so in the log);
- a model idle for ``idle_ttl_s`` is unloaded by :meth:`sweep` (after ``min_residency_s``);
- ``preload`` ids are loaded at start and count like any other.

Loads, evictions, residency and load seconds are Prometheus metrics; resident bytes are
published for the worker's load function, which counts them against the memory budget.
The worker's default voice and STT model are not managed here: they are pinned.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from agent.log import logger
from agent.obs.metrics import (
    MODEL_EVICTIONS,
    MODEL_LOAD_SECONDS,
    MODEL_LOADS,
    MODELS_RESIDENT,
    MODELS_RESIDENT_BYTES,
)

M = TypeVar("M")


@dataclass
class _Entry(Generic[M]):
    loading: Future[M]
    model: M | None = None
    size: int = 0
    loaded_at: float = 0.0
    last_used: float = 0.0
    in_use: int = 0


@dataclass(frozen=True)
class Eviction:
    model: str
    reason: str  # "cap" or "ttl"


@dataclass
class ModelManager(Generic[M]):
    """Loads ``load(id)`` on demand and unloads with ``unload(model)``; ``size(model)`` is
    its memory in bytes. ``kind`` labels its metrics (``voice``)."""

    load: Callable[[str], M]
    unload: Callable[[M], None]
    size: Callable[[M], int]
    kind: str
    cap: int = 4
    idle_ttl_s: float = 600.0
    min_residency_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, _Entry[M]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loader: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="model-loader")
    )
    evictions: list[Eviction] = field(default_factory=list)  # recent, for tests and logs
    sweep_interval_s: float = 1.0
    _sweeper: asyncio.Task[None] | None = None

    def resident(self) -> list[str]:
        """Loaded models, least recently used first."""
        with self._lock:
            loaded = [(e.last_used, i) for i, e in self._entries.items() if e.model is not None]
        return [i for _, i in sorted(loaded)]

    def in_use(self, model_id: str) -> int:
        with self._lock:
            entry = self._entries.get(model_id)
            return entry.in_use if entry is not None else 0

    def resident_bytes(self) -> int:
        with self._lock:
            return sum(e.size for e in self._entries.values() if e.model is not None)

    @asynccontextmanager
    async def use(self, model_id: str) -> AsyncIterator[M]:
        """The model, resident while the block runs; loads it first if needed (only this
        caller, and others asking for the same model, wait for that)."""
        self._ensure_sweeper()
        with self._lock:
            entry = self._entries.get(model_id)
            if entry is None:
                entry = self._entries[model_id] = _Entry(self._submit_load(model_id))
            entry.in_use += 1
        try:
            model = entry.model
            if model is None:
                model = await asyncio.wrap_future(entry.loading)
            entry.last_used = self.clock()
            self._enforce_cap()
            yield model
        finally:
            with self._lock:
                entry.in_use -= 1
                entry.last_used = self.clock()

    async def preload(self, model_ids: list[str]) -> None:
        for model_id in model_ids:
            async with self.use(model_id):
                pass

    def _submit_load(self, model_id: str) -> Future[M]:
        future = self._loader.submit(self._load, model_id)
        future.add_done_callback(lambda f: self._loaded(model_id, f))
        return future

    def _load(self, model_id: str) -> M:
        started = time.perf_counter()
        model = self.load(model_id)
        seconds = time.perf_counter() - started
        MODEL_LOADS.labels(self.kind).inc()
        MODEL_LOAD_SECONDS.labels(self.kind).observe(seconds)
        logger.info("model loaded", extra={"model": model_id, "load_s": round(seconds, 3)})
        return model

    def _loaded(self, model_id: str, future: Future[M]) -> None:
        with self._lock:
            entry = self._entries.get(model_id)
            if entry is None or entry.loading is not future:
                return
            if future.exception() is not None:
                # a failed load is not cached: the next request tries again
                del self._entries[model_id]
                return
            entry.model = future.result()
            entry.size = self.size(entry.model)
            entry.loaded_at = entry.last_used = self.clock()
        self._publish()

    def _enforce_cap(self) -> None:
        while True:
            with self._lock:
                loaded = {i: e for i, e in self._entries.items() if e.model is not None}
                if len(loaded) <= self.cap:
                    return
                victim = self._least_recently_used_idle(loaded)
                if victim is None:
                    logger.warning(
                        "models over the resident cap: every resident model is in use or new",
                        extra={"resident": len(loaded), "cap": self.cap},
                    )
                    return
            self._evict(victim, "cap")

    def _least_recently_used_idle(self, loaded: dict[str, _Entry[M]]) -> str | None:
        now = self.clock()
        idle = [
            (e.last_used, i)
            for i, e in loaded.items()
            if e.in_use == 0 and now - e.loaded_at >= self.min_residency_s
        ]
        return min(idle)[1] if idle else None

    def sweep(self) -> list[str]:
        """Unload the models idle for ``idle_ttl_s`` (resident at least
        ``min_residency_s``); returns their ids."""
        now = self.clock()
        with self._lock:
            expired = [
                i
                for i, e in self._entries.items()
                if e.model is not None
                and e.in_use == 0
                and now - e.last_used >= self.idle_ttl_s
                and now - e.loaded_at >= self.min_residency_s
            ]
        for model_id in expired:
            self._evict(model_id, "ttl")
        return expired

    def _evict(self, model_id: str, reason: str) -> None:
        with self._lock:
            entry = self._entries.get(model_id)
            if entry is None or entry.model is None or entry.in_use:
                return  # taken since it was chosen: it stays
            del self._entries[model_id]
        self.unload(entry.model)
        self.evictions = [*self.evictions[-63:], Eviction(model_id, reason)]
        MODEL_EVICTIONS.labels(self.kind, reason).inc()
        logger.info("model unloaded", extra={"model": model_id, "reason": reason})
        self._publish()

    def _publish(self) -> None:
        with self._lock:
            loaded = [e for e in self._entries.values() if e.model is not None]
        MODELS_RESIDENT.labels(self.kind).set(len(loaded))
        MODELS_RESIDENT_BYTES.labels(self.kind).set(sum(e.size for e in loaded))

    def _ensure_sweeper(self) -> None:
        """The TTL sweep runs on the loop of the sessions using the manager (started with
        the first use, again if that loop has gone)."""
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            self.sweep()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            if entry.model is not None:
                self.unload(entry.model)
        self._loader.shutdown(wait=False, cancel_futures=True)
        self._publish()
