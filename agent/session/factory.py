"""A participant's AgentSession built on the process's engines (agent/models/engines.py).

What belongs to one session is made here, fresh for each: the VAD (its pause and minimum
speech change live), the noise-filter slot, the TTS slot a config message can swap, the
end-of-turn detector listening to this session's pause text. The models behind them are
the process's, shared by every session.
"""

from __future__ import annotations

from typing import Any, Protocol

from livekit.agents import AgentSession

from agent.log import logger
from agent.models.engines import BARGE_IN_MIN_SPEECH_S, Engines, VoiceChain, turn_options
from agent.models.voices import UnknownVoice
from agent.session.barge_in_vad import BargeInVAD
from agent.session.config import SessionConfig
from agent.session.swappable import SwappableTTS, SwitchableNoiseFilter
from agent.session.voice_agent import BackchannelRule
from cache.tts import CachedTTS
from plugins._common.pause_text import PauseText
from plugins.noise import create as create_noise_filter
from plugins.smart_turn import HybridTurnOptions, SmartTurnDetector
from plugins.whisper.models import UnsupportedLanguage


class SessionBuilder(Protocol):
    """How a VoiceManager builds a participant's voice session (``voice_session``)."""

    def __call__(
        self,
        engines: Engines,
        config: SessionConfig | None = None,
        *,
        namespace: str | None = None,
        user_away_timeout: float | None = None,
    ) -> AgentSession[Any]: ...


def noise_filter(engines: Engines, name: str | None = None) -> SwitchableNoiseFilter:
    """A fresh filter slot for one session (filters keep per-stream state)."""
    return SwitchableNoiseFilter(create_noise_filter, name or engines.settings.noise_filter)


def turn_detector(
    engines: Engines, turn: HybridTurnOptions, pause_text: PauseText
) -> SmartTurnDetector:
    """One session's end-of-turn detector: Smart Turn on the process's batcher, with the
    session's pause text judged by the text scorer when its weight is above 0."""
    return SmartTurnDetector(
        None,
        options=turn,
        batcher=engines.turn_batcher,
        pause_text=pause_text,
        text_scorer=engines.turn_text if turn.text_weight > 0 else None,
    )


def backchannels(engines: Engines) -> BackchannelRule | None:
    words = engines.settings.backchannel_words.split(",")
    phrases = [p.strip() for p in words if p.strip()]
    return BackchannelRule(phrases) if phrases else None


def voice_session(
    engines: Engines,
    config: SessionConfig | None = None,
    *,
    namespace: str | None = None,
    user_away_timeout: float | None = None,
) -> AgentSession[Any]:
    """A new voice session on the shared engines, with ``config``'s choices.

    ``namespace``: the clip-cache namespace of its replies (the tenant). ``user_away_timeout``:
    silence after which the caller counts as away (None: never; agent/conversation/idle.py)."""
    settings = engines.settings
    config = config or SessionConfig()
    turn = config.turn or turn_options(settings)
    # the STT's pause decode reaches this session's turn detector through ``pause_text``
    pause_text = PauseText()
    voice_activity = BargeInVAD.load(
        **turn.vad_options(), barge_in_min_speech=BARGE_IN_MIN_SPEECH_S
    )
    session: AgentSession[Any] = AgentSession(
        vad=voice_activity,
        stt=engines.stt.for_session(pause_text, session_language(engines, config)),
        llm=engines.llm,
        tts=SwappableTTS(session_voice(engines, config, namespace), release=engines.release_voice),
        turn_handling={
            "turn_detection": turn_detector(engines, turn, pause_text),
            "endpointing": turn.endpointing(),
            "interruption": {
                "mode": "vad",
                "min_duration": BARGE_IN_MIN_SPEECH_S,
                # pause on user speech, resume when it was no real turn (a backchannel)
                "resume_false_interruption": True,
                "false_interruption_timeout": settings.false_interruption_timeout_s,
            },
            # the STT's pause decode arrives as a preflight transcript while the turn
            # detector decides; reply audio is ready when the turn is confirmed
            "preemptive_generation": {"enabled": True, "preemptive_tts": True},
        },
        aec_warmup_duration=settings.aec_warmup_s or None,
        session_close_transcript_timeout=0,
        user_away_timeout=user_away_timeout,
    )
    # while the agent speaks, the VAD's start of speech is the barge-in trigger
    session.on(
        "agent_state_changed",
        lambda ev: voice_activity.agent_speaking(ev.new_state == "speaking"),
    )
    return session


def session_language(engines: Engines, config: SessionConfig) -> str | None:
    """The session's STT language: its config's (``auto`` included), else STT_LANGUAGE."""
    default = engines.settings.stt_language.strip().lower() or "auto"
    if config.stt_language:
        try:
            engines.check_language(config.stt_language)
        except UnsupportedLanguage as e:  # from dispatch metadata or the tenant's default
            logger.warning("language not available, the default is used", extra={"error": str(e)})
            return default
        return config.stt_language
    return default


def session_voice(engines: Engines, config: SessionConfig, namespace: str | None) -> Any:
    """The voice ``config`` names (checked where it came in: a voice removed since falls
    back to the worker's, said in the log)."""
    try:
        return engines.voice(config.tts_speed, namespace=namespace, voice_id=config.tts_voice)
    except UnknownVoice as e:
        logger.warning("voice not available, the default speaks", extra={"error": str(e)})
        return engines.voice(config.tts_speed, namespace=namespace)


def text_session(engines: Engines) -> AgentSession[Any]:
    """A text-only session (``audio=false``): the LLM and nothing else."""
    return AgentSession(
        llm=engines.llm,
        vad=None,
        # None (not NOT_GIVEN): no STT or TTS at all, where leaving them out would pick
        # LiveKit Cloud's defaults; the stubs only allow NOT_GIVEN
        stt=None,  # type: ignore[arg-type]
        tts=None,  # type: ignore[arg-type]
        turn_handling={"turn_detection": "manual", "interruption": {"enabled": False}},
        session_close_transcript_timeout=0,
        user_away_timeout=None,  # a text relay's backend decides when a chat is over
    )


def clip_cache_of(voice: Any) -> CachedTTS | None:
    """The CachedTTS inside a session's voice slot / fallback chain, if any."""
    while voice is not None and not isinstance(voice, CachedTTS):
        if isinstance(voice, SwappableTTS):
            voice = voice.inner
        elif isinstance(voice, VoiceChain):
            voice = voice.primary
        else:
            return None
    return voice
