"""Latency figures start at the last voiced sample of the input, found from the signal."""

from __future__ import annotations

import numpy as np

from agent.sim.io import PacedAudioInput, voiced_span
from tests.audio_fixtures import mix_at_snr, noise_like, silence, speak


def test_the_voiced_span_ignores_leading_and_trailing_silence() -> None:
    speech = speak("What is the weather like in Paris today?", rate=16000)
    loud = np.flatnonzero(np.abs(speech) > 300)
    padded = np.concatenate([silence(0.7, 16000), speech, silence(1.5, 16000)])
    first, last = voiced_span(padded, 16000)
    assert abs(first - (0.7 * 16000 + loud[0])) <= 160 * 2  # within two 10 ms windows
    assert abs(last - (0.7 * 16000 + loud[-1])) <= 160 * 2


def test_a_noisy_recording_s_hiss_is_not_speech() -> None:
    speech = speak("Please tell me a fun fact about the ocean.", rate=16000)
    padded = np.concatenate([speech, silence(1.5, 16000)])
    noisy = mix_at_snr(padded, noise_like(padded.size), 10.0)
    _, last = voiced_span(noisy, 16000)
    assert last <= speech.size + 0.2 * 16000  # not the end of the clip, 1.5 s later


async def test_speech_end_is_the_last_voiced_sample_not_the_clip_end() -> None:
    speech = speak("Can you book a table for two people?", rate=16000)
    mic = PacedAudioInput()
    clip = np.concatenate([speech, silence(1.0, 16000)])
    started = mic._clock()
    await mic.play(clip, 16000)
    _, last = voiced_span(clip, 16000)
    assert abs((mic.speech_ended_at[0] - started) - last / 16000) < 0.05
    assert mic._clock() - mic.speech_ended_at[0] > 0.9  # the trailing second is not speech
