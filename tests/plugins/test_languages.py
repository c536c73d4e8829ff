"""Languages: ``STT_MODEL=base`` (the packaged multilingual whisper base) with a session
language of ``auto`` hears German, French and English; the language detected on the first
utterance is kept; an English-only model refuses other languages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from livekit.agents import stt

from agent.models.engines import Engines
from agent.settings import Settings
from plugins._common.pause_text import PauseText
from plugins.whisper.models import UnsupportedLanguage, check_whisper_language, is_multilingual
from tests.audio_fixtures import speak, to_frames, wer

# espeak-ng voices; whisper base hears espeak's French far worse than its German (a
# sentence of plain words is chosen: docs/voices-and-languages.md has the figures)
SPEECH = {
    "de": ("de", "Ich möchte morgen früh mit dem Zug nach Berlin fahren."),
    "fr": ("fr", "Je suis très content de vous voir."),
    "en": ("en-us", "What time does the museum open on Sunday morning?"),
}


@pytest.fixture(scope="module")
def base_engines(cache_dir: Path) -> Engines:
    from agent.models.assets import download_all

    download_all(cache_dir)  # places the joined base model, as download-files does
    return Engines(Settings(cache_path=cache_dir, stt_model="base", stt_device="cpu"))


async def final_of(session_stt: stt.STT, text: str, voice: str) -> str:
    stream = session_stt.stream()
    for frame in to_frames(speak(text, rate=16000, voice=voice), 16000, ms=100):
        stream.push_frame(frame)
    stream.flush()

    async def first_final() -> str:
        async for ev in stream:
            if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT and ev.alternatives[0].text:
                return ev.alternatives[0].text
        return ""

    try:
        return await asyncio.wait_for(first_final(), 120)
    finally:
        await stream.aclose()


@pytest.mark.slow
async def test_base_with_auto_hears_german_french_and_english(base_engines: Engines) -> None:
    whisper = base_engines.stt
    assert whisper.resolved.multilingual is True
    for language, (voice, text) in SPEECH.items():
        session = whisper.for_session(PauseText(), "auto")
        heard = await final_of(session, text, voice)
        assert wer(text, heard) <= 0.35, (language, heard)
        # detected on the first utterance, then kept for the session's next ones
        assert session.language == language, (language, session.language)
        assert session.stream()._opts.language == language


def test_an_english_only_model_refuses_other_languages(cache_dir: Path) -> None:
    from plugins.whisper.models import packaged_tiny_en

    assert is_multilingual(packaged_tiny_en()) is False
    engines = Engines(Settings(cache_path=cache_dir))
    engines.check_language("en")
    for language in ("de", "auto"):
        with pytest.raises(UnsupportedLanguage, match="English only"):
            engines.check_language(language)
    check_whisper_language("de", True)
    with pytest.raises(UnsupportedLanguage, match="no language"):
        check_whisper_language("xx", True)
