"""The words can end a turn the voice keeps open, after a longer pause: a transcript the
text scorer is sure is finished ends the turn at ``text_confirm_pause`` instead of the
silence timeout (what made complete questions in a flat voice wait 2 s)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from livekit import rtc

from plugins._common.pause_text import PauseText
from plugins.smart_turn import HybridTurnOptions, SmartTurnDetector
from plugins.smart_turn.detector import ASKED_AT_SILENCE_S
from plugins.smart_turn.text import TextVerdict


class FixedAudio:
    """Smart Turn's verdict, fixed: the voice sounds unfinished."""

    def __init__(self, p: float) -> None:
        self.p = p

    async def predict(self, audio16k: np.ndarray) -> float:
        return self.p


class FixedText:
    def __init__(self, p: float) -> None:
        self.p = p

    async def verdict(self, text: str) -> TextVerdict:
        return TextVerdict(text, self.p, None, None)


def detector(p_audio: float, p_text: float, **options: float) -> SmartTurnDetector:
    pause_text = PauseText()
    pause_text.publish("Could you repeat that, please?")
    return SmartTurnDetector(
        None,
        options=HybridTurnOptions(**options),
        batcher=FixedAudio(p_audio),
        pause_text=pause_text,
        text_scorer=FixedText(p_text),
    )


async def verdict_and_wait(turns: SmartTurnDetector) -> tuple[float, float]:
    stream = turns.stream()
    asked = time.monotonic()
    event = await stream.predict()
    return event.end_of_turn_probability, time.monotonic() - asked


async def test_sure_words_end_the_turn_after_the_confirm_pause() -> None:
    turns = detector(0.2, 0.95, text_confirm=0.9, text_confirm_pause=0.6)
    p, waited = await verdict_and_wait(turns)
    assert p >= turns.options.threshold  # the session ends the turn on this verdict
    # not before the longer pause (asked at ASKED_AT_SILENCE_S of silence)
    assert waited >= 0.6 - ASKED_AT_SILENCE_S - 0.02, waited


@pytest.mark.parametrize(
    ("p_text", "options"),
    [
        (0.8, {"text_confirm": 0.9}),  # not sure enough
        (0.99, {"text_confirm": 1.0}),  # switched off
        (0.99, {"text_confirm": 0.9, "text_confirm_pause": 0.8, "silence_timeout": 0.7}),
        # the voice is sure it goes on ("a table for four and" heard as "... four ends.")
        (0.99, {"text_confirm": 0.9, "text_confirm_min_audio": 0.3}),
    ],
)
async def test_otherwise_the_voice_keeps_the_turn_open(p_text: float, options: dict) -> None:
    turns = detector(0.2, p_text, **options)
    p, waited = await verdict_and_wait(turns)
    assert p < turns.options.threshold
    assert waited < 0.3  # at once: the session waits for the silence timeout itself


async def test_speech_resumed_during_the_confirm_pause_cancels_it() -> None:
    turns = detector(0.2, 0.95, text_confirm=0.9, text_confirm_pause=1.0)
    stream = turns.stream()
    future = stream.predict()
    await asyncio.sleep(0.2)
    stream.cancel_inference()  # what the session does when the caller speaks again
    assert future.cancelled()


async def test_the_confirm_pause_is_counted_from_the_last_voiced_frame() -> None:
    turns = detector(0.2, 0.95, text_confirm=0.9, text_confirm_pause=0.6, early_pause=0.0)
    stream = turns.stream()
    rate, n = 16000, 320
    tone = (3000 * np.sin(np.arange(n) * 0.1)).astype(np.int16).tobytes()
    quiet = bytes(2 * n)
    for data in [tone] * 50 + [quiet] * 15:  # 1 s of voice, then 0.3 s of quiet
        stream.push_audio(rtc.AudioFrame(data, rate, 1, n))
    voice_ended = time.monotonic()
    event = await stream.predict()
    waited = time.monotonic() - voice_ended
    assert event.end_of_turn_probability >= turns.options.threshold
    # the pause began when the voice ended, not when the session's VAD implies
    assert 0.6 - 0.02 <= waited < 0.6 + 0.2, waited
