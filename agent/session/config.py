"""A session's configuration message: parsed strictly, applied per participant session.

Shape (every key optional)::

    {
      "audio": true | false,          # false: text/data relay, no audio engines at all
      "noise_filter": "off" | "auto" | "rnnoise" | "deepfilternet",
      "greeting": "Hello! How can I help?",   # said when the voice session starts
      "recording": true,              # record the session, if the tenant's policy allows
      "llm":  {"instructions": "..."},
      "tts":  {"speed": 1.1, "voice": "piper:en_US-joe-medium"},   # GET /v1/voices
      "stt":  {"language": "de"},     # a language code, or "auto" (detected, then kept)
      "turn": {"threshold": 0.5, "decision_pause": 0.3, "silence_timeout": 2.0,
               "min_speech": 0.25}
    }

Unknown keys, wrong types and out-of-range values raise :class:`ConfigError` carrying a
machine-readable ``code``, a ``message`` and the dotted ``field`` at fault; nothing is
applied when any part is wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from agent import json_input
from plugins.smart_turn import HybridTurnOptions

MAX_CONFIG_BYTES = 16 * 1024
MAX_GREETING_CHARS = 500
MAX_VOICE_ID_CHARS = 120
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")  # whisper's language codes
NOISE_FILTERS = ("off", "auto", "rnnoise", "deepfilternet")
_TURN_RANGES = {
    "threshold": (0.0, 1.0),
    "decision_pause": (0.05, 5.0),
    "silence_timeout": (0.1, 30.0),
    "min_speech": (0.0, 5.0),
}


class ConfigError(ValueError):
    """A config message that cannot be applied."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "field": self.field}


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """The resolved settings of one session; ``None`` means "the worker's default"."""

    audio: bool | None = None
    noise_filter: str | None = None
    instructions: str | None = None
    tts_speed: float | None = None
    tts_voice: str | None = None  # a voice id; checked against the catalog where applied
    stt_language: str | None = None  # a language code or "auto"
    turn: HybridTurnOptions | None = None
    greeting: str | None = None
    recording: bool | None = None  # asked for; the tenant's policy must allow it too

    def merged(self, update: SessionConfig) -> SessionConfig:
        """This config with every field ``update`` sets replaced."""
        return SessionConfig(
            audio=update.audio if update.audio is not None else self.audio,
            noise_filter=update.noise_filter or self.noise_filter,
            instructions=update.instructions or self.instructions,
            tts_speed=update.tts_speed if update.tts_speed is not None else self.tts_speed,
            tts_voice=update.tts_voice or self.tts_voice,
            stt_language=update.stt_language or self.stt_language,
            turn=update.turn or self.turn,
            greeting=update.greeting or self.greeting,
            recording=update.recording if update.recording is not None else self.recording,
        )


def parse_config(raw: str | bytes | dict[str, Any], base_turn: HybridTurnOptions) -> SessionConfig:
    """Parse a config message; ``base_turn`` fills the turn keys the message leaves out."""
    data = _load(raw)
    _only(
        data,
        {"audio", "noise_filter", "llm", "tts", "stt", "turn", "greeting", "recording"},
        prefix="",
    )
    audio = data.get("audio")
    if audio is not None and not isinstance(audio, bool):
        raise ConfigError("invalid_type", "audio must be true or false", "audio")
    noise = data.get("noise_filter")
    if noise is not None and noise not in NOISE_FILTERS:
        raise ConfigError(
            "invalid_value",
            f"noise_filter must be one of {', '.join(NOISE_FILTERS)}",
            "noise_filter",
        )
    instructions = None
    if "llm" in data:
        llm = _object(data["llm"], "llm")
        _only(llm, {"instructions"}, prefix="llm.")
        if "instructions" in llm:
            instructions = _string(llm["instructions"], "llm.instructions", 8000)
    speed = voice = None
    if "tts" in data:
        tts = _object(data["tts"], "tts")
        _only(tts, {"speed", "voice"}, prefix="tts.")
        if "speed" in tts:
            speed = _number(tts["speed"], "tts.speed", 0.5, 2.0)
        if "voice" in tts:
            voice = _string(tts["voice"], "tts.voice", MAX_VOICE_ID_CHARS)
    language = None
    if "stt" in data:
        stt = _object(data["stt"], "stt")
        _only(stt, {"language"}, prefix="stt.")
        if "language" in stt:
            language = _string(stt["language"], "stt.language", 16).lower()
            if language != "auto" and not _LANGUAGE.match(language):
                raise ConfigError(
                    "invalid_value",
                    'stt.language must be a language code or "auto"',
                    "stt.language",
                )
    turn = None
    if "turn" in data:
        t = _object(data["turn"], "turn")
        _only(t, set(_TURN_RANGES), prefix="turn.")
        values = {k: _number(v, f"turn.{k}", *_TURN_RANGES[k]) for k, v in t.items()}
        try:
            turn = replace(base_turn, **values)
        except ValueError as e:
            raise ConfigError("invalid_value", str(e), "turn") from None
    greeting = (
        _string(data["greeting"], "greeting", MAX_GREETING_CHARS) if "greeting" in data else None
    )
    recording = data.get("recording")
    if recording is not None and not isinstance(recording, bool):
        raise ConfigError("invalid_type", "recording must be true or false", "recording")
    return SessionConfig(
        recording=recording,
        audio=audio,
        noise_filter=noise,
        instructions=instructions,
        tts_speed=speed,
        tts_voice=voice,
        stt_language=language,
        turn=turn,
        greeting=greeting,
    )


def _load(raw: str | bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError("too_large", f"config message is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        data = json_input.loads(raw, what="config message")
    except json_input.JsonInputError as e:
        raise ConfigError("invalid_json", str(e)) from None
    if not isinstance(data, dict):
        raise ConfigError("invalid_type", "config message must be a JSON object")
    return data


def _only(data: dict[str, Any], allowed: set[str], *, prefix: str) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError("unknown_field", f"unknown field {prefix}{key}", f"{prefix}{key}")


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError("invalid_type", f"{name} must be an object", name)
    return value


def _string(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("invalid_type", f"{name} must be a non-empty string", name)
    if len(value) > limit:
        raise ConfigError("too_large", f"{name} is longer than {limit} characters", name)
    return value


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError("invalid_type", f"{name} must be a number", name)
    if not low <= value <= high:
        raise ConfigError("invalid_value", f"{name} must be within [{low}, {high}]", name)
    return float(value)
