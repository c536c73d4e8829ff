"""The final transcript is decoded during the pause, so the flush at the end of the turn
finds it ready; speech after the pause makes it stale and is decoded with the rest."""

from __future__ import annotations

import asyncio

import numpy as np
from livekit.agents import stt

from plugins.whisper.batch import window_frames
from tests.audio_fixtures import silence, speak, to_frames, trim_silence, wer

FIRST = "What is the weather like in Paris today"
SECOND = "and what about tomorrow morning"


async def events_until(stream, kind: stt.SpeechEventType, within: float = 30) -> list:
    seen: list[stt.SpeechEvent] = []

    async def read() -> None:
        async for ev in stream:
            seen.append(ev)
            if ev.type == kind:
                return

    await asyncio.wait_for(read(), timeout=within)
    return seen


async def test_the_pause_decode_is_the_final_without_a_decode_at_the_flush(whisper_stt) -> None:
    stream = whisper_stt.stream()
    for f in to_frames(np.concatenate([speak(FIRST, rate=16000), silence(0.5, 16000)]), 16000):
        stream.push_frame(f)
    seen = await events_until(stream, stt.SpeechEventType.PREFLIGHT_TRANSCRIPT)
    preflight = seen[-1].alternatives[0].text
    assert wer(FIRST, preflight) <= 0.2, preflight
    stream.flush()
    seen = await events_until(stream, stt.SpeechEventType.FINAL_TRANSCRIPT)
    await stream.aclose()
    assert seen[-1].alternatives[0].text == preflight
    assert stream.finals_reused == 1


async def test_speech_after_the_pause_is_decoded_with_the_rest(whisper_stt) -> None:
    stream = whisper_stt.stream()
    first = np.concatenate([speak(FIRST, rate=16000), silence(0.5, 16000)])
    for f in to_frames(first, 16000):
        stream.push_frame(f)
    await events_until(stream, stt.SpeechEventType.PREFLIGHT_TRANSCRIPT)
    # cut right after the last word: no pause, so the flush must decode
    for f in to_frames(trim_silence(speak(SECOND, rate=16000)), 16000):
        stream.push_frame(f)
    stream.flush()
    seen = await events_until(stream, stt.SpeechEventType.FINAL_TRANSCRIPT)
    await stream.aclose()
    final = seen[-1].alternatives[0].text
    assert wer(f"{FIRST} {SECOND}", final) <= 0.25, final
    assert stream.finals_reused == 0


def test_the_encoder_window_covers_the_speech_and_never_exceeds_thirty_seconds() -> None:
    assert window_frames(4 * 16000, 10.0) == 1000  # short turn: the minimum window
    assert window_frames(4 * 16000, 30.0) == 3000  # whisper's own window
    assert window_frames(25 * 16000, 10.0) == 2600  # long turn: speech + 1 s margin
    assert window_frames(40 * 16000, 10.0) == 3000
