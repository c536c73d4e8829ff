from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.audio_fixtures import wer

TEXT = "Hello there. The weather in Paris is sunny today. Would you like to hear more?"


def _pcm(frames) -> np.ndarray:
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])


async def test_chunked_output_is_speech_at_advertised_rate(piper_tts, whisper_stt) -> None:
    frames = [ev.frame async for ev in piper_tts.synthesize(TEXT)]
    assert {f.sample_rate for f in frames} == {piper_tts.sample_rate} == {22050}
    pcm = _pcm(frames)
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 500  # not silence
    ev = await whisper_stt.recognize(frames)
    assert wer(TEXT, ev.alternatives[0].text) <= 0.2, ev.alternatives[0].text


async def test_stream_emits_first_sentence_before_input_ends(piper_tts, whisper_stt) -> None:
    stream = piper_tts.stream()
    stream.push_text("Good morning, my friend. ")
    stream.push_text("I have checked ")
    first = await asyncio.wait_for(stream.__anext__(), timeout=20)
    # audio for the first sentence arrived while the second is still being written
    assert first.frame.samples_per_channel > 0
    stream.push_text("the calendar for you.")
    stream.end_input()
    frames = [first.frame] + [ev.frame async for ev in stream]
    await stream.aclose()
    ev = await whisper_stt.recognize(frames)
    assert (
        wer("Good morning my friend. I have checked the calendar for you.", ev.alternatives[0].text)
        <= 0.2
    )


async def test_speed_changes_duration(piper_tts) -> None:
    from plugins.piper import PiperTTS

    fast = PiperTTS(speed=1.5, use_cuda=False, voice_instance=piper_tts._voice)
    normal = len(piper_tts.synthesize_pcm("One two three four five six."))
    quick = len(fast.synthesize_pcm("One two three four five six."))
    assert quick < normal * 0.8


def test_bad_options_are_rejected(piper_tts) -> None:
    from plugins.piper import PiperTTS

    with pytest.raises(ValueError):
        PiperTTS(speed=0, voice_instance=piper_tts._voice)
    with pytest.raises(ValueError, match="speaker_id"):
        PiperTTS(speaker_id=3, voice_instance=piper_tts._voice)


def test_missing_voice_is_a_clear_error(tmp_path) -> None:
    from plugins._common.errors import ModelLoadError
    from plugins.piper import PiperTTS

    with pytest.raises(ModelLoadError):
        PiperTTS(model_path=tmp_path / "none.onnx")
