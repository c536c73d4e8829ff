"""Collects what a session said and how long each stage took, from its public events.

Used by ``simulate``, the tests and the load harness, so they all read latencies the same
way: the framework's own metrics events (EOU, LLM, TTS), which it measures from the end of
user speech as detected by the VAD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from livekit.agents import AgentSession, metrics


@dataclass
class TurnProbe:
    # the user's committed turns, as the LLM saw them (one per turn, however many final
    # transcripts the STT sent during its pauses)
    transcripts: list[str] = field(default_factory=list)
    finals: list[str] = field(default_factory=list)  # every final transcript, in order
    replies: list[str] = field(default_factory=list)
    eou_ms: list[float] = field(default_factory=list)
    stt_final_ms: list[float] = field(default_factory=list)
    llm_ttft_ms: list[float] = field(default_factory=list)
    tts_ttfb_ms: list[float] = field(default_factory=list)

    def watch(self, session: AgentSession[Any]) -> None:
        session.on("metrics_collected", self._on_metrics)
        session.on("user_input_transcribed", self._on_transcribed)
        session.on("conversation_item_added", self._on_item)

    def _on_metrics(self, ev: Any) -> None:
        m = ev.metrics
        if isinstance(m, metrics.EOUMetrics):
            self.eou_ms.append(m.end_of_utterance_delay * 1000)
            self.stt_final_ms.append(m.transcription_delay * 1000)
        elif isinstance(m, metrics.LLMMetrics) and m.ttft >= 0:
            self.llm_ttft_ms.append(m.ttft * 1000)
        elif isinstance(m, metrics.TTSMetrics) and m.ttfb >= 0:
            self.tts_ttfb_ms.append(m.ttfb * 1000)

    def _on_transcribed(self, ev: Any) -> None:
        if ev.is_final and ev.transcript.strip():
            self.finals.append(ev.transcript.strip())

    def _on_item(self, ev: Any) -> None:
        # the first item may be an agent handoff, which has no role
        role = getattr(ev.item, "role", None)
        if role == "assistant" and ev.item.text_content:
            self.replies.append(ev.item.text_content)
        elif role == "user" and (ev.item.text_content or "").strip():
            self.transcripts.append(ev.item.text_content.strip())

    def first_latencies(self) -> dict[str, float]:
        """The first value of each stage latency that was measured."""
        out = {}
        for key in ("eou_ms", "stt_final_ms", "llm_ttft_ms", "tts_ttfb_ms"):
            values = getattr(self, key)
            if values:
                out[key] = values[0]
        return out
