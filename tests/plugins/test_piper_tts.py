from __future__ import annotations

import asyncio

import numpy as np
import pytest

from plugins._common.audio import ONSET_LEAD_S, trim_leading_silence
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


def test_leading_silence_is_trimmed_to_a_faded_lead() -> None:
    rate = 22050
    quiet = np.zeros(int(0.06 * rate), dtype=np.int16)
    tone = (8000 * np.sin(np.arange(rate // 10) * 0.3 + 1.0)).astype(np.int16)
    trimmed = trim_leading_silence(np.concatenate([quiet, tone]).tobytes(), rate)
    out = np.frombuffer(trimmed, np.int16)
    lead = int(ONSET_LEAD_S * rate)
    assert out.size == tone.size + lead  # 60 ms of silence gone, the lead kept
    assert out[0] == 0 and np.all(np.abs(out[:lead]) <= np.abs(tone[0]) + 1)  # faded in
    np.testing.assert_array_equal(out[lead:], tone)  # the sound itself untouched
    silent = np.zeros(rate // 10, dtype=np.int16).tobytes()
    assert trim_leading_silence(silent, rate) == silent  # a pause is a pause


def test_synthesized_speech_starts_within_a_few_ms(piper_tts) -> None:
    # Piper's joe voice leads with 0-62 ms of near-silence: at the start of a reply that is
    # time the caller waits for nothing
    audible = 10 ** (-40 / 20) * 32768
    for text in ["Here is a fun fact:", "The restaurant opens at nine.", "Paris is sunny."]:
        pcm = np.frombuffer(piper_tts.synthesize_pcm(text), dtype=np.int16)
        first = int(np.flatnonzero(np.abs(pcm) > audible)[0])
        assert first / piper_tts.sample_rate <= 0.025, (text, first)
