"""What the inference process serves, as its answer to ``hello`` says it: one typed message
built by the server and read by the job processes (no field read by name elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.models.shared.protocol import Header, ProtocolError
from plugins.piper.tts import VoiceInfo
from plugins.whisper.models import ResolvedModel


@dataclass(frozen=True, slots=True)
class VoiceHello:
    """The voice the inference process synthesizes with."""

    path: str
    config_path: str | None
    info: VoiceInfo


@dataclass(frozen=True, slots=True)
class Hello:
    pid: int
    stt: ResolvedModel | None  # None: STT is not served there (STT_BASE_URL)
    voice: VoiceHello | None  # None: TTS is not served there (TTS_BASE_URL)
    llm: str | None  # the embedded model's name; None: LLM_BASE_URL
    llm_context_tokens: int | None

    def to_header(self) -> Header:
        stt = self.stt
        voice = self.voice
        return {
            "pid": self.pid,
            "stt": None
            if stt is None
            else {
                "source": stt.source,
                "device": stt.device,
                "compute_type": stt.compute_type,
                "multilingual": stt.multilingual,
            },
            "voice": None
            if voice is None
            else {
                "path": voice.path,
                "config_path": voice.config_path,
                "sample_rate": voice.info.sample_rate,
                "num_speakers": voice.info.num_speakers,
                "length_scale": voice.info.length_scale,
                "espeak_voice": voice.info.espeak_voice,
            },
            "llm": self.llm,
            "llm_context_tokens": self.llm_context_tokens,
        }

    @classmethod
    def from_header(cls, header: Header) -> Hello:
        """Parse an answer to ``hello``; a malformed one raises ``ProtocolError``."""
        try:
            stt, voice = header.get("stt"), header.get("voice")
            return cls(
                pid=int(header["pid"]),
                stt=None
                if stt is None
                else ResolvedModel(
                    str(stt["source"]),
                    _device(stt["device"]),
                    str(stt["compute_type"]),
                    _optional_bool(stt.get("multilingual")),
                ),
                voice=None
                if voice is None
                else VoiceHello(
                    path=str(voice["path"]),
                    config_path=_optional_str(voice.get("config_path")),
                    info=VoiceInfo(
                        sample_rate=int(voice["sample_rate"]),
                        num_speakers=int(voice["num_speakers"]),
                        length_scale=float(voice["length_scale"]),
                        espeak_voice=str(voice.get("espeak_voice") or "en-us"),
                    ),
                ),
                llm=_optional_str(header.get("llm")),
                llm_context_tokens=_optional_int(header.get("llm_context_tokens")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ProtocolError(f"malformed hello from the inference process: {e}") from e


def _device(value: Any) -> Any:
    if value not in ("cuda", "cpu", "remote"):
        raise ValueError(f"unknown device {value!r}")
    return value


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
