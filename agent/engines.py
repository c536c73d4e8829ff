"""The engines, loaded once per process, and the ``AgentSession`` built from them.

A worker loads them in its setup function (once per job process, before any job arrives);
every session of that process shares them. Per-session state (VAD streams, turn-detector
streams, noise filters) is created per session, never shared.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import AgentSession, llm, tts
from livekit.plugins import silero

from cache.store import ClipStore
from cache.tts import CachedTTS
from plugins.llama import LlamaLLM, openai_compatible
from plugins.noise import Framed48kDenoiser
from plugins.noise import create as create_noise_filter
from plugins.piper import PiperTTS
from plugins.smart_turn import HybridTurnOptions, SmartTurnDetector, SmartTurnModel
from plugins.whisper import WhisperSTT

from .metrics import INFERENCE_QUEUED
from .session_config import SessionConfig
from .settings import Settings

# livekit-agents' default (0.5 s) makes barge-in wait half a second of speech; a third of a
# second still ignores coughs and clicks, which the VAD's own minimum already drops.
BARGE_IN_MIN_SPEECH_S = 0.3


def turn_options(settings: Settings) -> HybridTurnOptions:
    return HybridTurnOptions(
        threshold=settings.turn_threshold,
        decision_pause=settings.turn_decision_pause_s,
        silence_timeout=settings.turn_silence_timeout_s,
        min_speech=settings.turn_min_speech_s,
    )


def build_llm(settings: Settings) -> llm.LLM:
    """The embedded llama.cpp model, or an OpenAI-compatible endpoint when one is set."""
    if settings.llm_base_url:
        return openai_compatible(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key or "unused",
            temperature=settings.llm_temperature,
            timeout_s=settings.llm_timeout_s,
        )
    return LlamaLLM(
        cache_dir=settings.cache_path,
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,
        seed=None if settings.llm_seed < 0 else settings.llm_seed,
    )


def open_clip_store(settings: Settings) -> ClipStore | None:
    """The clip store under CACHE_PATH/clips, or None when CACHE_MAX_BYTES is 0."""
    if settings.cache_max_bytes == 0:
        return None
    return ClipStore(settings.cache_path / "clips", max_bytes=settings.cache_max_bytes)


def cached(inner: PiperTTS, store: ClipStore | None) -> tts.TTS:
    return inner if store is None else CachedTTS(inner, store)


@dataclass
class Engines:
    """One loaded copy of each model, shared by every session of this process."""

    settings: Settings
    stt: WhisperSTT
    piper: PiperTTS
    llm: llm.LLM
    turn_model: SmartTurnModel
    clip_store: ClipStore | None = None
    _vads: dict[HybridTurnOptions, silero.VAD] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Settings) -> Engines:
        """Load every model; raises the plugin's error (naming what to run) when one is
        missing, so a job process never starts half-equipped."""
        return cls(
            settings=settings,
            stt=WhisperSTT(
                model=settings.stt_model or None,
                device=settings.stt_device,
                compute_type=settings.stt_compute_type,  # type: ignore[arg-type]
                beam_size=settings.stt_beam_size,
                language=settings.stt_language or None,
                download_root=settings.cache_path / "models" / "whisper",
            ),
            piper=PiperTTS(
                model_path=settings.tts_voice or None,
                speed=settings.tts_speed,
                use_cuda="auto" if settings.tts_device == "auto" else settings.tts_device == "cuda",
            ),
            llm=build_llm(settings),
            turn_model=SmartTurnModel.from_cache(settings.cache_path),
            clip_store=open_clip_store(settings),
        )

    def __post_init__(self) -> None:
        self.tts: tts.TTS = cached(self.piper, self.clip_store)
        self._prewarm_task: asyncio.Task[int] | None = None
        self._queue_task: asyncio.Task[None] | None = None

    def queued(self) -> dict[str, int]:
        """Requests waiting for each engine's worker thread (its executor's queue)."""
        engines = {"stt": self.stt, "tts": self.piper, "llm": self.llm, "turn": self.turn_model}
        out = {}
        for name, engine in engines.items():
            executor = getattr(engine, "_executor", None)
            queue = getattr(executor, "_work_queue", None)
            out[name] = queue.qsize() if queue is not None else 0
        return out

    def start_queue_gauge(self, interval_s: float = 1.0) -> None:
        """Publish ``queued()`` as the ``voice_inference_queued`` gauge, once per process."""
        if self._queue_task is not None:
            return

        async def publish() -> None:
            while True:
                for engine, depth in self.queued().items():
                    INFERENCE_QUEUED.labels(engine).set(depth)
                await asyncio.sleep(interval_s)

        self._queue_task = asyncio.create_task(publish())

    def start_prewarm(self) -> None:
        """Fill the clip cache with the prewarm phrases in the background, once per process
        (only phrases no process has cached yet are synthesized)."""
        if self._prewarm_task is None and isinstance(self.tts, CachedTTS):
            phrases = self.settings.prewarm_phrases()
            if phrases:
                self._prewarm_task = asyncio.create_task(self.tts.fill(phrases))

    def vad(self, turn: HybridTurnOptions) -> silero.VAD:
        # the ONNX session is loaded once per option set; each session opens its own stream
        if turn not in self._vads:
            self._vads[turn] = silero.VAD.load(**turn.vad_options())
        return self._vads[turn]

    def noise_filter(self, name: str | None = None) -> Framed48kDenoiser | None:
        """A fresh filter for one session (filters keep per-stream state)."""
        return create_noise_filter(name or self.settings.noise_filter)  # type: ignore[arg-type]

    def session(self, config: SessionConfig | None = None) -> AgentSession[Any]:
        """A new session on the shared engines, with ``config``'s per-session choices."""
        config = config or SessionConfig()
        turn = config.turn or turn_options(self.settings)
        voice = (
            self.tts
            if config.tts_speed is None
            else cached(self.piper.with_speed(config.tts_speed), self.clip_store)
        )
        return AgentSession(
            vad=self.vad(turn),
            stt=self.stt,
            llm=self.llm,
            tts=voice,
            turn_handling={
                "turn_detection": SmartTurnDetector(self.turn_model, options=turn),
                "endpointing": turn.endpointing(),  # type: ignore[typeddict-item]
                "interruption": {"mode": "vad", "min_duration": BARGE_IN_MIN_SPEECH_S},
            },
            aec_warmup_duration=self.settings.aec_warmup_s or None,
            session_close_transcript_timeout=0,
        )
