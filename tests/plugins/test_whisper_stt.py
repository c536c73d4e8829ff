from __future__ import annotations

import asyncio

import pytest
from livekit.agents import stt

from tests.audio_fixtures import silence, speak, to_frames, wer

SENTENCES = [
    "What is the weather like in Paris today?",
    "I would like to change the delivery address for my order.",
    "Can you tell me a short story about a friendly robot?",
]


@pytest.mark.parametrize("sentence", SENTENCES)
async def test_transcribes_sentences(whisper_stt, sentence: str) -> None:
    pcm = speak(sentence, rate=16000)
    ev = await whisper_stt.recognize(to_frames(pcm, 16000))
    assert ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT
    assert wer(sentence, ev.alternatives[0].text) <= 0.2, ev.alternatives[0].text


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
async def test_any_rate_and_channel_count(whisper_stt, rate: int, channels: int) -> None:
    sentence = SENTENCES[0]
    pcm = speak(sentence, rate=rate, channels=channels)
    ev = await whisper_stt.recognize(to_frames(pcm, rate, channels))
    assert wer(sentence, ev.alternatives[0].text) <= 0.2, ev.alternatives[0].text


async def test_stream_gives_final_on_flush_and_ignores_leading_silence(whisper_stt) -> None:
    sentence = SENTENCES[1]
    stream = whisper_stt.stream()
    frames = to_frames(silence(3.0, 48000), 48000) + to_frames(speak(sentence, rate=48000), 48000)
    for f in frames:
        stream.push_frame(f)
    stream.flush()
    finals: list[str] = []

    async def read() -> None:
        async for ev in stream:
            if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                finals.append(ev.alternatives[0].text)
                return

    await asyncio.wait_for(read(), timeout=30)
    await stream.aclose()
    assert wer(sentence, finals[0]) <= 0.2, finals


async def test_stream_emits_interim_results_while_speaking(whisper_stt) -> None:
    stream = whisper_stt.stream()
    pcm = speak(SENTENCES[2], rate=16000)
    events: list[stt.SpeechEvent] = []

    async def read() -> None:
        async for ev in stream:
            events.append(ev)
            if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                return

    reader = asyncio.create_task(read())
    for f in to_frames(pcm, 16000, ms=20):
        stream.push_frame(f)
        await asyncio.sleep(0.02)  # real time, so interim decodes have room to run
    stream.flush()
    await asyncio.wait_for(reader, timeout=30)
    await stream.aclose()
    kinds = [e.type for e in events]
    assert stt.SpeechEventType.INTERIM_TRANSCRIPT in kinds
    assert kinds[-1] == stt.SpeechEventType.FINAL_TRANSCRIPT


def test_model_resolution_prefers_int8_on_cpu() -> None:
    from plugins.whisper import resolve_model

    r = resolve_model(None, "cpu", "auto")
    assert r.device == "cpu" and r.compute_type == "int8"
    assert resolve_model("/models/x", "cuda", "auto").compute_type == "float16"


def test_missing_model_is_a_clear_error(tmp_path) -> None:
    from plugins._common.errors import ModelLoadError
    from plugins.whisper import WhisperSTT

    with pytest.raises(ModelLoadError, match="could not load"):
        WhisperSTT(model=str(tmp_path / "nope"), device="cpu")
