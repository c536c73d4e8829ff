"""The final transcript is decoded during the pause and sent when the pause has lasted, so the
session has the words when its turn detector decides; what is said after it is decoded at
the flush."""

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


async def test_a_pause_sends_the_final_before_any_flush(whisper_stt) -> None:
    stream = whisper_stt.stream()
    for f in to_frames(np.concatenate([speak(FIRST, rate=16000), silence(0.5, 16000)]), 16000):
        stream.push_frame(f)
    seen = await events_until(stream, stt.SpeechEventType.FINAL_TRANSCRIPT)
    final = seen[-1].alternatives[0].text
    assert wer(FIRST, final) <= 0.2, final
    assert stream.finals_at_pause == 1
    stream.flush()  # nothing said since: an empty final, no decode
    seen = await events_until(stream, stt.SpeechEventType.FINAL_TRANSCRIPT)
    await stream.aclose()
    assert seen[-1].alternatives[0].text == ""


async def test_speech_after_the_pause_final_is_decoded_at_the_flush(whisper_stt) -> None:
    stream = whisper_stt.stream()
    first = np.concatenate([speak(FIRST, rate=16000), silence(0.5, 16000)])
    for f in to_frames(first, 16000):
        stream.push_frame(f)
    await events_until(stream, stt.SpeechEventType.FINAL_TRANSCRIPT)
    # cut right after the last word: no pause, so the flush must decode
    for f in to_frames(trim_silence(speak(SECOND, rate=16000)), 16000):
        stream.push_frame(f)
    stream.flush()
    seen = await events_until(stream, stt.SpeechEventType.FINAL_TRANSCRIPT)
    await stream.aclose()
    final = seen[-1].alternatives[0].text.lower()
    # the second part alone: nothing of the first, already final, is sent again
    assert "tomorrow" in final and "paris" not in final, final
    assert stream.finals_reused == 0 and stream.finals_at_pause == 1


async def test_a_gap_shorter_than_a_pause_sends_no_final(whisper_stt) -> None:
    stream = whisper_stt.stream()
    gap = np.concatenate([speak(FIRST, rate=16000), silence(0.15, 16000)])
    for f in to_frames(np.concatenate([gap, trim_silence(speak(SECOND, rate=16000))]), 16000):
        stream.push_frame(f)
    stream.flush()
    seen = await events_until(stream, stt.SpeechEventType.FINAL_TRANSCRIPT)
    await stream.aclose()
    finals = [e for e in seen if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert len(finals) == 1 and stream.finals_at_pause == 0
    assert wer(f"{FIRST} {SECOND}", finals[0].alternatives[0].text) <= 0.25, finals


def test_the_encoder_window_covers_the_speech_and_never_exceeds_thirty_seconds() -> None:
    assert window_frames(4 * 16000, 10.0) == 1000  # short turn: the minimum window
    assert window_frames(4 * 16000, 30.0) == 3000  # whisper's own window
    assert window_frames(25 * 16000, 10.0) == 2600  # long turn: speech + 1 s margin
    assert window_frames(40 * 16000, 10.0) == 3000


async def test_the_pause_decode_goes_out_as_a_preflight_before_the_final(whisper_stt) -> None:
    stream = whisper_stt.stream()
    # 0.15 s of quiet: the pause decode starts (PAUSE_DECODE_S), the final may not yet
    spoken = trim_silence(speak(FIRST, rate=16000))
    for f in to_frames(np.concatenate([spoken, silence(0.15, 16000)]), 16000):
        stream.push_frame(f)
    seen = await events_until(stream, stt.SpeechEventType.PREFLIGHT_TRANSCRIPT)
    assert all(e.type != stt.SpeechEventType.FINAL_TRANSCRIPT for e in seen)
    preflight = seen[-1].alternatives[0].text
    assert wer(FIRST, preflight) <= 0.2, preflight
    for f in to_frames(silence(0.2, 16000), 16000):  # the pause lasts: the same words, final
        stream.push_frame(f)
    seen = await events_until(stream, stt.SpeechEventType.FINAL_TRANSCRIPT)
    await stream.aclose()
    assert seen[-1].alternatives[0].text == preflight
    assert stream.finals_at_pause == 1
    assert stream.sent_events[stt.SpeechEventType.PREFLIGHT_TRANSCRIPT] == 1
