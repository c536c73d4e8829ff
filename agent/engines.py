"""Loads the engines once per process and builds an ``AgentSession`` from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livekit.agents import AgentSession
from livekit.plugins import silero

from plugins.llama import LlamaLLM
from plugins.piper import PiperTTS
from plugins.smart_turn import HybridTurnOptions, SmartTurnDetector, SmartTurnModel
from plugins.whisper import WhisperSTT


@dataclass
class Engines:
    """One loaded copy of each model, shared by every session of this process."""

    stt: WhisperSTT
    tts: PiperTTS
    llm: LlamaLLM
    turn_model: SmartTurnModel

    @classmethod
    def load(cls, cache_path: Path) -> Engines:
        return cls(
            stt=WhisperSTT(),
            tts=PiperTTS(),
            llm=LlamaLLM(cache_dir=cache_path, max_tokens=60),
            turn_model=SmartTurnModel.from_cache(cache_path),
        )

    def session(self, turn: HybridTurnOptions | None = None) -> AgentSession[Any]:
        turn = turn or HybridTurnOptions()
        return AgentSession(
            vad=silero.VAD.load(**turn.vad_options()),
            stt=self.stt,
            llm=self.llm,
            tts=self.tts,
            turn_handling={
                "turn_detection": SmartTurnDetector(self.turn_model, options=turn),
                "endpointing": turn.endpointing(),  # type: ignore[typeddict-item]
                "interruption": {"mode": "vad"},
            },
            session_close_transcript_timeout=0,
        )
