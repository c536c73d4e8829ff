"""Cache keys: what makes two clips the same clip.

A clip is identified by its normalized text and a canonical hash of the whole TTS config
(engine, voice identity and version, speed, sample rate, ...). Any change in the config gives
other keys, so a changed voice or speed can never be served a stale clip.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from plugins._common.text import speakable


def normalize_text(text: str) -> str:
    """What the engine will read (see ``speakable``), whitespace collapsed and trimmed. Case
    and punctuation are kept: they change how the sentence is spoken."""
    return " ".join(speakable(text).split())


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the config as canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def clip_key(text: str, tts_config_hash: str) -> str:
    """The content address of the clip for ``text`` under a config."""
    digest = hashlib.sha256()
    digest.update(tts_config_hash.encode())
    digest.update(b"\0")
    digest.update(normalize_text(text).encode())
    return digest.hexdigest()
