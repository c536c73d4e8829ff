"""OpenTelemetry traces: a span per user turn, exported over OTLP/HTTP when configured.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the standard variable; any OTLP/HTTP
collector: the OpenTelemetry Collector, Jaeger, Tempo, Honeycomb…). Then each process
exports through one ``TracerProvider``, and livekit-agents' own spans (``agent_session``,
``user_turn``, ``llm_node``, ``tts_node``…) go to the same provider.

``voice.turn`` is this worker's span of one exchange as the caller lived it: from the end of
their speech to the agent's first audible reply, with children where the time went:
``end_of_turn`` (the decision), ``stt.final`` (the final transcript), ``llm.first_token``,
``tts.first_audio``, and one ``clip_cache.lookup`` per sentence looked up in the clip cache
before the first audio (``hit`` true or false), and one ``inference.queue_wait`` per engine
that served the turn (the longest wait for it, with the number of requests and their
total wait; in the shared inference process's queue as in this process's). The figures
arrive after the reply starts (LLM and TTS metrics are reported when their streams end),
so the span is written, with its real start and end times, when the agent stops speaking.
Tenant, room and participant are attributes; no transcript text is ever put on a span.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Tracer

from agent.log import logger

TRACER_NAME = "local-voice-agent"
_configured: Any = None


def configure_tracing(endpoint: str, service: str, *, allow_pii: bool = False) -> Any:
    """This process's tracer provider exporting to ``endpoint`` (OTEL_EXPORTER_OTLP_ENDPOINT;
    once; None when it is empty). livekit-agents' spans are sent to it too; they carry
    conversation text only with ``allow_pii`` (LOG_TRANSCRIPTS)."""
    global _configured
    endpoint = endpoint.strip()
    if not endpoint:
        return None
    if _configured is not None:
        return _configured
    from livekit.agents import telemetry
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    trace.set_tracer_provider(provider)
    telemetry.set_tracer_provider(provider, allow_pii=allow_pii)
    _configured = provider
    logger.info("traces exported over OTLP/HTTP", extra={"endpoint": endpoint})
    return provider


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


@dataclass
class _Turn:
    speech_end: float
    eou_delay: float
    stt_delay: float
    reply_at: float | None = None
    llm: tuple[float, float] | None = None  # (start, ttft)
    tts: tuple[float, float] | None = None  # (start, ttfb)
    lookups: list[Any] = field(default_factory=list)
    waits: list[QueueWait] = field(default_factory=list)


@dataclass(frozen=True)
class QueueWait:
    engine: str
    began: float  # wall-clock time
    seconds: float


class SessionQueueWaits:
    """A session's recent inference queue waits: the sink its context gives
    ``plugins._common.executor`` (told from engine threads too)."""

    def __init__(self, keep: int = 512) -> None:
        self._waits: deque[QueueWait] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def record(self, engine: str, began: float, seconds: float) -> None:
        with self._lock:
            self._waits.append(QueueWait(engine, began, max(0.0, seconds)))

    def between(self, start: float, end: float) -> list[QueueWait]:
        with self._lock:
            return [w for w in self._waits if start <= w.began <= end]


class TurnTracer:
    """Writes a ``voice.turn`` span for each exchange of one session."""

    def __init__(
        self,
        attributes: dict[str, str],
        *,
        lookups: Callable[[], list[Any]] | None = None,
        waits: SessionQueueWaits | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._attributes = {k: v for k, v in attributes.items() if v}
        self._lookups = lookups or (lambda: [])
        self._waits = waits
        self._tracer = tracer or trace.get_tracer(TRACER_NAME)
        self._turn: _Turn | None = None

    def watch(self, session: Any) -> None:
        session.on("metrics_collected", self._on_metrics)
        session.on("agent_state_changed", self._on_agent_state)

    def _on_metrics(self, ev: Any) -> None:
        from livekit.agents import metrics as lk

        m = ev.metrics
        if isinstance(m, lk.EOUMetrics) and m.end_of_utterance_delay > 0:
            speech_end = m.timestamp - m.end_of_utterance_delay
            self._turn = _Turn(speech_end, m.end_of_utterance_delay, m.transcription_delay)
        elif self._turn is None:
            return
        elif isinstance(m, lk.LLMMetrics) and m.ttft >= 0 and self._turn.llm is None:
            self._turn.llm = (m.timestamp - m.duration, m.ttft)
        elif isinstance(m, lk.TTSMetrics) and m.ttfb >= 0 and self._turn.tts is None:
            self._turn.tts = (m.timestamp - m.duration, m.ttfb)

    def _on_agent_state(self, ev: Any) -> None:
        turn = self._turn
        if turn is None:
            return
        now = getattr(ev, "created_at", None) or time.time()
        if ev.new_state == "speaking" and turn.reply_at is None:
            turn.reply_at = now
        elif ev.old_state == "speaking" and turn.reply_at is not None:
            # the lookups on the way to the first audio (later sentences are looked up
            # while the reply plays, off the caller's wait)
            turn.lookups = [
                lookup
                for lookup in self._lookups()
                if turn.speech_end <= lookup.at <= turn.reply_at
            ]
            if self._waits is not None:
                turn.waits = self._waits.between(turn.speech_end, turn.reply_at)
            self._write(turn)
            self._turn = None

    def _write(self, turn: _Turn) -> None:
        assert turn.reply_at is not None
        start = turn.speech_end
        root = self._tracer.start_span(
            "voice.turn",
            start_time=_ns(start),
            attributes={
                **self._attributes,
                "voice.voice_to_voice_ms": round((turn.reply_at - start) * 1000, 1),
            },
        )
        context = trace.set_span_in_context(root)

        def child(name: str, begin: float, seconds: float, **attributes: Any) -> Span:
            span = self._tracer.start_span(
                name, context=context, start_time=_ns(begin), attributes=attributes
            )
            span.end(end_time=_ns(begin + max(0.0, seconds)))
            return span

        child("end_of_turn", start, turn.eou_delay)
        child("stt.final", start, turn.stt_delay)
        if turn.llm is not None:
            child("llm.first_token", turn.llm[0], turn.llm[1])
        if turn.tts is not None:
            child("tts.first_audio", turn.tts[0], turn.tts[1])
        for lookup in turn.lookups:
            child("clip_cache.lookup", lookup.at, lookup.seconds, **{"clip_cache.hit": lookup.hit})
        by_engine: dict[str, list[QueueWait]] = {}
        for wait in turn.waits:
            by_engine.setdefault(wait.engine, []).append(wait)
        for engine, waits in sorted(by_engine.items()):
            longest = max(waits, key=lambda w: w.seconds)
            child(
                "inference.queue_wait",
                longest.began,
                longest.seconds,
                **{
                    "inference.engine": engine,
                    "inference.requests": len(waits),
                    "inference.queue_wait_total_ms": round(sum(w.seconds for w in waits) * 1000, 3),
                },
            )
        root.end(end_time=_ns(turn.reply_at))
