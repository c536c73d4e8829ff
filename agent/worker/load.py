"""The load the worker reports to LiveKit: what actually saturates a voice worker.

Three signals, each scaled so that 1.0 means "take no more":

- jobs: active jobs against ``WORKER_CAPACITY`` (what the operator measured with
  benchmarks/load.py for their hardware);
- inference queue delay: the longest recent wait for an engine thread in any job process,
  against ``INFERENCE_QUEUE_BUDGET_S``. It is scaled to reach 1.0 at ``QUEUE_HEADROOM`` of
  the budget, so the worker reports full *before* a request waits as long as the budget;
- GPU memory: the fraction in use against ``GPU_MEMORY_LIMIT``;
- model memory: what the model manager's resident models take (every process's, published
  as ``voice_models_resident_bytes``) against ``MODELS_MEMORY_BUDGET_MB``.

The load is the largest of them: any one saturated resource makes the worker full. Job
processes publish their queue delay as a Prometheus multiprocess gauge; the main process,
where LiveKit's load function runs, reads them from the same directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# the queue signal reaches 1.0 at this fraction of the budget
QUEUE_HEADROOM = 0.8


@dataclass(frozen=True)
class LoadSignals:
    active_jobs: int
    capacity: int
    queue_delay_s: float = 0.0
    queue_budget_s: float = 0.25
    gpu_memory_fraction: float | None = None  # None: no GPU
    gpu_memory_limit: float = 0.9
    model_bytes: int = 0
    model_budget_bytes: int = 0  # 0: not counted

    def parts(self) -> dict[str, float]:
        parts = {
            "jobs": self.active_jobs / self.capacity,
            "queue": self.queue_delay_s / (self.queue_budget_s * QUEUE_HEADROOM),
        }
        if self.gpu_memory_fraction is not None:
            parts["gpu_memory"] = self.gpu_memory_fraction / self.gpu_memory_limit
        if self.model_budget_bytes > 0:
            parts["model_memory"] = self.model_bytes / self.model_budget_bytes
        return parts

    def load(self) -> float:
        return min(1.0, max(self.parts().values()))


def _published(name: str) -> list[float] | None:
    """Every live process's samples of gauge ``name`` (None in a single process)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return None
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return [
        sample.value
        for family in registry.collect()
        if family.name == name
        for sample in family.samples
    ]


def published_queue_delay() -> float:
    """The largest ``voice_inference_queue_delay_seconds`` any live process published."""
    samples = _published("voice_inference_queue_delay_seconds")
    if samples is None:
        from plugins._common.executor import QUEUE_DELAYS

        # one process (console, tests): the engines run here
        return max((QUEUE_DELAYS.delay(e) for e in QUEUE_DELAYS.engines()), default=0.0)
    return max(samples, default=0.0)


def published_model_bytes() -> int:
    """The memory of the model manager's resident models, over every live process."""
    samples = _published("voice_models_resident_bytes")
    if samples is None:
        from agent.obs.metrics import MODELS_RESIDENT_BYTES

        samples = [m.samples[0].value for m in MODELS_RESIDENT_BYTES.collect() if m.samples]
    return int(sum(samples))


def model_budget_bytes(budget_mb: int) -> int:
    """MODELS_MEMORY_BUDGET_MB in bytes (0: half of the machine's memory)."""
    if budget_mb > 0:
        return budget_mb * 1024 * 1024
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return int(pages * page_size) // 2


_nvml: object | None = None
_no_gpu = False  # NVML missing or failed once: not asked again on every load report


def gpu_memory_fraction() -> float | None:
    """Used / total over all GPUs, or None without NVML or a GPU."""
    global _nvml, _no_gpu
    if _no_gpu:
        return None
    try:
        import pynvml

        if _nvml is None:
            pynvml.nvmlInit()
            _nvml = pynvml
        used = total = 0
        for i in range(pynvml.nvmlDeviceGetCount()):
            info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i))
            used, total = used + info.used, total + info.total
        return used / total if total else None
    except Exception:  # no NVML library, no driver, no GPU
        _no_gpu = True
        return None
