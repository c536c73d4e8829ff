"""Prewarmed phrases are what a session looks up: the same chunks, hence hits."""

from __future__ import annotations

from pathlib import Path

from agent.models.assets import prewarm_clips
from agent.models.engines import Engines
from agent.session.factory import clip_cache_of
from agent.settings import Settings


async def test_prewarmed_apology_plays_from_the_cache(tmp_path: Path) -> None:
    settings = Settings(
        cache_path=tmp_path, cache_prewarm="Welcome to the Grand Hotel, how can I help?"
    )
    # the apology, the idle prompt and goodbye, and the operator's phrase
    assert await prewarm_clips(settings) == 4
    assert await prewarm_clips(settings) == 0  # nothing left to do

    engines = Engines(settings)
    voice = engines.voice(None)  # what a session speaks with (first chunk cut early)
    for phrase in (
        settings.llm_apology,
        settings.user_idle_prompt,
        "Welcome to the Grand Hotel, how can I help?",
    ):
        stream = voice.stream()
        stream.push_text(phrase)
        stream.end_input()
        async for _ in stream:
            pass
        await stream.aclose()
    cache = clip_cache_of(voice)
    assert cache is not None and cache.lookups
    assert all(lookup.hit for lookup in cache.lookups), list(cache.lookups)
