"""Prometheus metrics of the voice worker, correct across its processes.

Jobs run in separate processes, so metrics use prometheus-client's multiprocess mode: every
process writes its samples to files under ``PROMETHEUS_MULTIPROC_DIR`` (set by
``python -m agent`` before anything imports prometheus-client) and ``/metrics`` in the main
process merges them (:func:`render`). Without that variable (tests, ``simulate``) the
process-local default registry is used.

Latencies are observed from each session's public events (:class:`SessionMetrics`):

- ``stt_final``: VAD end of speech → final transcript (livekit's ``transcription_delay``)
- ``eou_delay``: VAD end of speech → end-of-turn decision (``end_of_utterance_delay``)
- ``llm_ttft`` / ``tts_ttfb``: the LLM's and the TTS's own time to first token / audio
- ``voice_to_voice``: end of user speech → the agent starts speaking (first audio frame)
- ``barge_in``: the VAD reports user speech while the agent speaks → the agent stops

Label cardinality is bounded: ``tenant`` is a configured tenant id or ``other``; ``stage``,
``kind`` and ``reason`` come from small fixed sets.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

STT_FINAL = Histogram(
    "voice_stt_final_latency_seconds",
    "End of user speech to the final transcript",
    buckets=LATENCY_BUCKETS,
)
EOU_DELAY = Histogram(
    "voice_end_of_turn_delay_seconds",
    "End of user speech to the end-of-turn decision",
    buckets=LATENCY_BUCKETS,
)
LLM_TTFT = Histogram("voice_llm_ttft_seconds", "LLM time to first token", buckets=LATENCY_BUCKETS)
TTS_TTFB = Histogram("voice_tts_ttfb_seconds", "TTS time to first audio", buckets=LATENCY_BUCKETS)
VOICE_TO_VOICE = Histogram(
    "voice_to_voice_latency_seconds",
    "End of user speech to the agent's first audio",
    buckets=LATENCY_BUCKETS,
)
BARGE_IN = Histogram(
    "voice_barge_in_latency_seconds",
    "User speech detected while the agent speaks to the agent stopping",
    buckets=LATENCY_BUCKETS,
)

SESSIONS_STARTED = Counter("voice_sessions_started", "Voice sessions attached")
SESSIONS_ENDED = Counter("voice_sessions_ended", "Voice sessions ended", ["reason"])
NOISE_FILTER_SWITCHES = Counter(
    "voice_noise_filter_switches",
    "NOISE_FILTER=auto turning DeepFilterNet on or off for a session",
    ["to"],
)
SESSIONS_REJECTED = Counter(
    "voice_sessions_rejected", "Dispatches refused at admission", ["reason"]
)
SPEAK_TRUNCATED = Counter(
    "speak_truncated", "/v1/speak responses cut at SPEAK_MAX_AUDIO_S (the prediction was short)"
)
INFERENCE_REFUSED = Counter(
    "inference_connections_refused",
    "Connections to the inference socket refused (another user, or over the cap)",
    ["reason"],
)
PROVIDER_ERRORS = Counter(
    "voice_provider_errors", "Errors reported by an engine", ["stage", "kind"]
)
FALLBACKS = Counter(
    "voice_fallbacks", "Fallbacks taken (apology, fallback TTS, breaker open)", ["stage", "kind"]
)
AUDIO_FRAMES_DROPPED = Counter(
    "voice_audio_frames_dropped", "Input audio frames with an impossible format, dropped"
)
BACKCHANNELS_IGNORED = Counter(
    "voice_backchannels_ignored", "User backchannels that did not take the turn from the agent"
)
CONTEXT_TURNS_DROPPED = Counter(
    "voice_context_turns_dropped",
    "Chat items left out of LLM requests to fit the model's context (folded into a summary)",
)
MEMORY_OPERATIONS = Counter(
    "voice_memory_operations",
    "Conversation memory recalls (hit, miss, error) and keeps (ok, error)",
    ["op", "outcome"],
)
IDLE_PROMPTS = Counter(
    "voice_idle_prompts", "Prompts said to a caller who went quiet (USER_IDLE_S)"
)
TOOL_CALLS = Counter(
    "voice_tool_calls",
    "Tool calls by kind (http, mcp, builtin) and outcome (ok, error, invalid_arguments, "
    "timeout, refused)",
    ["kind", "outcome"],
)
TOOL_SECONDS = Histogram(
    "voice_tool_duration_seconds", "Tool call duration", ["kind"], buckets=LATENCY_BUCKETS
)
TOOL_FILLERS = Counter(
    "voice_tool_fillers", "Filler phrases said while a tool ran past TOOL_FILLER_AFTER_S"
)
RECORDINGS = Counter(
    "voice_recordings",
    "Session recordings started, completed, and failed (destination full or unwritable)",
    ["outcome"],
)
ACTIVE_SESSIONS = Gauge(
    "voice_active_sessions", "Voice sessions attached now", multiprocess_mode="livesum"
)
INFERENCE_QUEUE_DELAY = Gauge(
    "voice_inference_queue_delay_seconds",
    "Longest recent wait for an engine thread (the worker's load function reads it)",
    ["engine"],
    multiprocess_mode="livemax",
)
INFERENCE_QUEUED = Gauge(
    "voice_inference_queued",
    "Inference requests waiting for an engine",
    ["engine"],
    multiprocess_mode="livesum",
)
MODEL_LOADS = Counter("voice_model_loads", "Models loaded by the model manager", ["kind"])
MODEL_EVICTIONS = Counter(
    "voice_model_evictions",
    "Models unloaded by the model manager (reason: cap or ttl)",
    ["kind", "reason"],
)
MODEL_LOAD_SECONDS = Histogram(
    "voice_model_load_seconds",
    "Time to load a model on the model manager's loader thread",
    ["kind"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0),
)
MODELS_RESIDENT = Gauge(
    "voice_models_resident",
    "Models the model manager holds now (steady growth and evictions: thrashing)",
    ["kind"],
    multiprocess_mode="livesum",
)
MODELS_RESIDENT_BYTES = Gauge(
    "voice_models_resident_bytes",
    "Memory of the models the model manager holds (the load function counts it)",
    ["kind"],
    multiprocess_mode="livesum",
)

_STAGES = {"stt", "llm", "tts", "vad", "turn"}


def stage_of(source: Any) -> str:
    """A bounded stage label for an error source (an engine object or its name)."""
    name = type(source).__name__.lower() if not isinstance(source, str) else source.lower()
    for stage in _STAGES:
        if stage in name:
            return stage
    return "other"


class SessionMetrics:
    """Observes one AgentSession's events into the histograms and counters above."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._last_speech_end: float | None = None
        self._barge_in_at: float | None = None
        self._agent_state = "initializing"

    def watch(self, session: Any) -> None:
        session.on("metrics_collected", self._on_metrics)
        session.on("agent_state_changed", self._on_agent_state)
        session.on("user_state_changed", self._on_user_state)
        session.on("error", self._on_error)

    def _on_metrics(self, ev: Any) -> None:
        from livekit.agents import metrics as lk

        m = ev.metrics
        if isinstance(m, lk.EOUMetrics) and m.end_of_utterance_delay > 0:
            EOU_DELAY.observe(m.end_of_utterance_delay)
            STT_FINAL.observe(m.transcription_delay)
            # the decision time minus its delay is when the user stopped speaking
            self._last_speech_end = m.timestamp - m.end_of_utterance_delay
        elif isinstance(m, lk.LLMMetrics) and m.ttft >= 0:
            LLM_TTFT.observe(m.ttft)
        elif isinstance(m, lk.TTSMetrics) and m.ttfb >= 0:
            TTS_TTFB.observe(m.ttfb)

    def _on_agent_state(self, ev: Any) -> None:
        now = getattr(ev, "created_at", None) or self._clock()
        if ev.new_state == "speaking" and self._last_speech_end is not None:
            VOICE_TO_VOICE.observe(max(0.0, now - self._last_speech_end))
            self._last_speech_end = None
        if ev.old_state == "speaking" and self._barge_in_at is not None:
            BARGE_IN.observe(max(0.0, now - self._barge_in_at))
            self._barge_in_at = None
        self._agent_state = ev.new_state

    def _on_user_state(self, ev: Any) -> None:
        if ev.new_state == "speaking" and self._agent_state == "speaking":
            self._barge_in_at = getattr(ev, "created_at", None) or self._clock()

    def _on_error(self, ev: Any) -> None:
        PROVIDER_ERRORS.labels(stage_of(ev.source), type(ev.error).__name__).inc()


class ClipCacheCollector(Collector):
    """Clip cache figures read from the store's shared index at scrape time (so they are
    those of every process), for the main process's registry."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        try:
            s = self._store.stats()
        except Exception:  # a broken cache must not break /metrics
            return
        for name, value, doc in (
            ("clip_cache_hits", s.hits, "Clip cache lookups served from disk"),
            ("clip_cache_misses", s.misses, "Clip cache lookups that needed synthesis"),
            ("clip_cache_evictions", s.evictions, "Clips evicted to stay under the cap"),
            ("clip_cache_corrupt", s.corrupt, "Damaged clips found and deleted"),
            ("clip_cache_write_errors", s.write_errors, "Clips that could not be stored"),
            ("clip_cache_bytes", s.bytes, "Bytes of clips on disk"),
            ("clip_cache_clips", s.clips, "Clips on disk"),
        ):
            yield GaugeMetricFamily(name, doc, value=value)


class GpuMemoryCollector(Collector):
    """GPU memory in use per device, through NVML when the host has it."""

    def __init__(self) -> None:
        import pynvml  # from nvidia-ml-py (the gpu extra)

        pynvml.nvmlInit()
        self._nvml = pynvml

    def collect(self) -> Iterator[Metric]:
        used = GaugeMetricFamily("gpu_memory_used_bytes", "GPU memory in use", labels=["gpu"])
        total = GaugeMetricFamily("gpu_memory_total_bytes", "GPU memory in all", labels=["gpu"])
        for i in range(self._nvml.nvmlDeviceGetCount()):
            info = self._nvml.nvmlDeviceGetMemoryInfo(self._nvml.nvmlDeviceGetHandleByIndex(i))
            used.add_metric([str(i)], float(info.used))
            total.add_metric([str(i)], float(info.total))
        yield used
        yield total


class _ProcessMetrics(Collector):
    """This process's default registry, as one collector of another registry."""

    def collect(self) -> Iterable[Metric]:
        from prometheus_client import REGISTRY

        return REGISTRY.collect()


def scrape_registry(extra: list[Collector] | None = None) -> CollectorRegistry | None:
    """The registry ``/metrics`` renders: every process's samples in multiprocess mode, the
    default registry otherwise (``None``), plus ``extra`` collectors."""
    registry: CollectorRegistry | None = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry(auto_describe=True)
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    if extra:
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
            registry.register(_ProcessMetrics())
        for collector in extra:
            registry.register(collector)
    return registry


def render(extra: list[Collector] | None = None) -> tuple[bytes, str]:
    registry = scrape_registry(extra)
    data = generate_latest(registry) if registry is not None else generate_latest()
    return data, CONTENT_TYPE_LATEST


def optional_gpu_collector() -> list[Collector]:
    try:
        return [GpuMemoryCollector()]
    except Exception:  # no NVML library or no GPU: no GPU metric
        return []


def _count_noise_filter_switches() -> None:
    import plugins.noise

    plugins.noise.SWITCH_COUNTER = NOISE_FILTER_SWITCHES


_count_noise_filter_switches()
