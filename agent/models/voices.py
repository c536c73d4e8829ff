"""The voices this worker can speak with, each with an id a session names in ``tts.voice``.

Three kinds, found when the catalog is built (at start, and again for ``GET /v1/voices``):

- ``piper:<name>``: the packaged en_US "joe" voice (or ``TTS_VOICE``), and every Piper
  ``<name>.onnx`` + ``<name>.onnx.json`` pair an operator drops under
  ``CACHE_PATH/models/piper/``. Each pair is checked first (the config's fields, the model
  file's shape); a broken pair is reported and skipped, never fatal.
- ``espeak:<language>``: espeak-ng's formant voices, for the languages no Piper voice
  covers (robotic, but no weights and ~100 languages).

The catalog only describes voices; Piper weights are loaded by the model manager
(agent/models/manager.py) when a session first asks for one.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger("agent.models.voices")

PIPER_PREFIX = "piper:"
ESPEAK_PREFIX = "espeak:"
MAX_VOICE_ID_CHARS = 120
# an ONNX model is a protobuf ModelProto: field 1 (ir_version, a varint) comes first
_ONNX_FIRST_BYTE = 0x08
_MIN_ONNX_BYTES = 1024
_MAX_CONFIG_BYTES = 4 * 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class UnknownVoice(LookupError):
    """A voice id the catalog does not list."""


@dataclass(frozen=True, slots=True)
class Voice:
    id: str
    engine: Literal["piper", "espeak"]
    language: str  # e.g. "en-us", "de"
    name: str
    sample_rate: int
    model_path: Path | None = None  # Piper only
    config_path: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "engine": self.engine,
            "language": self.language,
            "name": self.name,
            "sample_rate": self.sample_rate,
        }

    @property
    def base_language(self) -> str:
        """``de`` for ``de-DE``: what an STT language code is compared with."""
        return self.language.replace("_", "-").split("-")[0].lower()


def read_piper_config(config_path: Path) -> dict[str, Any]:
    """A Piper ``.onnx.json``, checked for what synthesis needs; ``ValueError`` says what
    is wrong with it."""
    if config_path.stat().st_size > _MAX_CONFIG_BYTES:
        raise ValueError("config is larger than 4 MiB")
    try:
        config = json.loads(config_path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"config is not JSON: {e}") from None
    if not isinstance(config, dict):
        raise ValueError("config is not a JSON object")
    rate = (config.get("audio") or {}).get("sample_rate")
    if not isinstance(rate, int) or not 8000 <= rate <= 48000:
        raise ValueError("config has no audio.sample_rate in 8000..48000")
    if not isinstance(config.get("phoneme_id_map"), dict) or not config["phoneme_id_map"]:
        raise ValueError("config has no phoneme_id_map")
    espeak = (config.get("espeak") or {}).get("voice")
    if config.get("phoneme_type", "espeak") == "espeak" and not isinstance(espeak, str):
        raise ValueError("config has no espeak.voice")
    return config


def check_piper_pair(model_path: Path, config_path: Path) -> Voice:
    """The voice a Piper pair describes, or ``ValueError`` naming what is broken."""
    if not config_path.is_file():
        raise ValueError(f"no {config_path.name} next to the model")
    size = model_path.stat().st_size
    with model_path.open("rb") as f:
        first = f.read(1)
    if size < _MIN_ONNX_BYTES or first != bytes([_ONNX_FIRST_BYTE]):
        raise ValueError("model file is not an ONNX model")
    config = read_piper_config(config_path)
    name = model_path.name.removesuffix(".onnx")
    if not _ID.match(name) or len(name) > MAX_VOICE_ID_CHARS - len(PIPER_PREFIX):
        raise ValueError("file name is not a usable voice id (letters, digits, _ . + -)")
    language = (config.get("espeak") or {}).get("voice") or (
        (config.get("language") or {}).get("code") or "und"
    )
    return Voice(
        id=PIPER_PREFIX + name,
        engine="piper",
        language=str(language).lower(),
        name=name,
        sample_rate=int(config["audio"]["sample_rate"]),
        model_path=model_path,
        config_path=config_path,
    )


def espeak_languages() -> dict[str, str]:
    """espeak-ng's languages, ``{code: name}`` (empty when the binary is missing)."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        return {}
    try:
        out = subprocess.run(
            [binary, "--voices"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    languages: dict[str, str] = {}
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4 and _ID.match(parts[1]):
            languages.setdefault(parts[1].lower(), parts[3].replace("_", " "))
    # a language espeak-ng lists only by region (fr-fr, fr-be) is also offered by its base
    # code, which espeak-ng accepts too ("espeak:fr", the code a session's language uses)
    for code, name in list(languages.items()):
        base = code.split("-")[0]
        if base != code and base not in languages:
            languages[base] = name.split(" (")[0]
    return languages


class VoiceCatalog:
    """Every voice of this worker, by id; ``default`` is the worker's own voice."""

    def __init__(self, voices: list[Voice], default: str, problems: list[str]) -> None:
        self._voices = {v.id: v for v in voices}
        self.default = default
        self.problems = problems  # the broken pairs skipped, for logs and the API

    @classmethod
    def discover(
        cls, default_model: Path, default_config: Path, piper_dir: Path, *, espeak_rate: int
    ) -> VoiceCatalog:
        """The default Piper voice, the pairs under ``piper_dir``, and espeak-ng voices for
        the languages left uncovered (at ``espeak_rate``, the session's output rate)."""
        try:
            default = check_piper_pair(default_model, default_config)
        except (OSError, ValueError) as e:
            # the worker's own voice loads (or fails) on its own terms: it is listed anyway
            logger.warning("default voice not checked: %s", e)
            default = Voice(
                PIPER_PREFIX + default_model.name.removesuffix(".onnx"),
                "piper",
                "und",
                default_model.name.removesuffix(".onnx"),
                sample_rate=espeak_rate,
                model_path=default_model,
                config_path=default_config,
            )
        voices = [default]
        problems: list[str] = []
        if piper_dir.is_dir():
            for model in sorted(piper_dir.glob("*.onnx")):
                try:
                    voice = check_piper_pair(model, Path(f"{model}.json"))
                except (OSError, ValueError) as e:
                    problems.append(f"{model.name}: {e}")
                    logger.warning("piper voice skipped: %s: %s", model.name, e)
                    continue
                if voice.id in {v.id for v in voices}:
                    continue  # the default voice dropped in again
                voices.append(voice)
        covered = {v.base_language for v in voices}
        for code, name in espeak_languages().items():
            if code.split("-")[0] not in covered:
                voices.append(
                    Voice(ESPEAK_PREFIX + code, "espeak", code, name, sample_rate=espeak_rate)
                )
        return cls(voices, default.id, problems)

    def get(self, voice_id: str) -> Voice:
        voice = self._voices.get(voice_id)
        if voice is None:
            raise UnknownVoice(f"unknown voice {voice_id[:MAX_VOICE_ID_CHARS]!r}")
        return voice

    def __contains__(self, voice_id: object) -> bool:
        return voice_id in self._voices

    def all(self) -> list[Voice]:
        return list(self._voices.values())
