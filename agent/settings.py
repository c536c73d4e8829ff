"""Typed settings, read from the environment once at start and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    """Attributes:
    cache_path: root of the clip cache and the model asset store (``CACHE_PATH``).
    """

    cache_path: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(cache_path=Path(env.get("CACHE_PATH", ".cache")).expanduser())
