"""A recorded session's transcript: each turn with speaker, text, times and latencies.

Turns come from the session's ``conversation_item_added`` events (what livekit-agents puts in
the chat history, so an interrupted reply holds only what was heard, marked ``interrupted``).
Times are seconds from the start of the recording, so a turn can be found in the audio. The
file is rewritten after every turn (write to a temporary file, then rename: a crash leaves
the last complete checkpoint, never half a file) and once more at the end.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from livekit.agents import AgentSession, llm
from livekit.agents.voice.events import ConversationItemAddedEvent

from agent.log import logger

_LATENCIES = (
    "transcription_delay",
    "end_of_turn_delay",
    "llm_node_ttft",
    "tts_node_ttfb",
    "e2e_latency",
)


class TranscriptWriter:
    def __init__(self, path: Path, *, started_at: float, meta: dict[str, Any]) -> None:
        self.path = path
        self.started_at = started_at
        self.meta = meta
        self.turns: list[dict[str, Any]] = []
        self.gaps: list[dict[str, Any]] = []
        self.ended_at: float | None = None
        self.failed = False
        self._session: AgentSession[Any] | None = None

    def watch(self, session: AgentSession[Any]) -> None:
        self._session = session
        session.on("conversation_item_added", self._on_item)

    def _on_item(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if not isinstance(item, llm.ChatMessage) or item.role not in ("user", "assistant"):
            return
        text = item.text_content
        if not text:
            return
        metrics: dict[str, Any] = dict(item.metrics or {})
        start = metrics.get("started_speaking_at") or item.created_at
        end = metrics.get("stopped_speaking_at")
        turn: dict[str, Any] = {
            "speaker": "user" if item.role == "user" else "agent",
            "text": text,
            "start_s": round(max(0.0, start - self.started_at), 3),
            "end_s": round(max(0.0, end - self.started_at), 3) if end else None,
            "interrupted": bool(item.interrupted),
        }
        latencies = {k: round(metrics[k] * 1000) for k in _LATENCIES if k in metrics}
        if latencies:
            turn["latency_ms"] = latencies
        self.turns.append(turn)
        self.checkpoint()

    def mark_gap(self, reason: str) -> None:
        """The audio stops here (the destination failed); the call goes on."""
        self.gaps.append({"at_s": round(time.time() - self.started_at, 3), "reason": reason})
        self.checkpoint()

    def close(self) -> None:
        if self._session is not None:
            self._session.off("conversation_item_added", self._on_item)
        self.ended_at = time.time()
        self.checkpoint()

    def document(self) -> dict[str, Any]:
        ended = self.ended_at
        return {
            **self.meta,
            "started_at": round(self.started_at, 3),
            "duration_s": round(ended - self.started_at, 3) if ended else None,
            "complete": ended is not None,
            "turns": self.turns,
            "gaps": self.gaps,
        }

    def checkpoint(self) -> None:
        if self.failed:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.document(), f, ensure_ascii=False)
            os.replace(tmp, self.path)
        except OSError as e:  # a full or read-only destination: the call goes on
            self.failed = True
            tmp.unlink(missing_ok=True)
            logger.warning("recording transcript not written", extra={"error": str(e)})
