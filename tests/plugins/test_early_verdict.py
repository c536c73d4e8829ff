"""The end-of-turn verdict starts at the detector's own pause clock (``early_pause`` of quiet
after a voiced frame), before the session asks for it after its VAD's silence: a verdict of
"done" is ready when asked; a "not done" is judged again on the audio the session asks
about; speech in between discards it."""

from __future__ import annotations

import asyncio

import numpy as np
from livekit import rtc

from plugins._common.pause_text import PauseText
from plugins.smart_turn import HybridTurnOptions, SmartTurnDetector
from plugins.smart_turn.text import TextVerdict

RATE = 16000
FRAME = RATE // 50  # 20 ms


class CountingAudio:
    """Smart Turn's verdict, fixed, counting calls and the audio each one heard."""

    def __init__(self, p: float) -> None:
        self.p = p
        self.heard: list[int] = []

    async def predict(self, audio16k: np.ndarray) -> float:
        self.heard.append(audio16k.size)
        await asyncio.sleep(0.03)  # inference takes time: a request may overlap it
        return self.p


class SureText:
    async def verdict(self, text: str) -> TextVerdict:
        return TextVerdict(text, 0.95, None, None)


def frames(seconds: float, voiced: bool) -> list[rtc.AudioFrame]:
    n = int(seconds * RATE) // FRAME
    t = np.arange(FRAME) / RATE
    data = (
        (3000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)
        if voiced
        else np.zeros(FRAME, dtype=np.int16)
    )
    return [rtc.AudioFrame(data.tobytes(), RATE, 1, FRAME) for _ in range(n)]


def detector(audio: CountingAudio, **options: float) -> SmartTurnDetector:
    pause_text = PauseText()
    pause_text.publish("What is the weather like in Paris today?")
    return SmartTurnDetector(
        None,
        options=HybridTurnOptions(**options),
        batcher=audio,
        pause_text=pause_text,
        text_scorer=SureText(),
    )


def push(stream, chunks: list[rtc.AudioFrame]) -> None:
    for f in chunks:
        stream.push_audio(f)


def after_speech(audio: CountingAudio, quiet_s: float, **options: float):
    """A detector stream that heard 1 s of voice, then ``quiet_s`` of quiet."""
    stream = detector(audio, **options).stream()
    push(stream, frames(1.0, voiced=True))
    push(stream, frames(quiet_s, voiced=False))
    return stream


async def test_a_done_verdict_is_made_at_the_early_pause_and_used_when_asked() -> None:
    audio = CountingAudio(0.9)
    stream = after_speech(audio, 0.1, early_pause=0.2)
    await asyncio.sleep(0.05)
    assert audio.heard == []  # 0.1 s of quiet: too soon
    push(stream, frames(0.1, voiced=False))
    await asyncio.sleep(0.05)
    assert len(audio.heard) == 1  # started on its own, nobody asked yet
    push(stream, frames(0.15, voiced=False))  # the session's VAD asks later
    event = await stream.predict()
    assert event.end_of_turn_probability >= 0.5
    assert len(audio.heard) == 1 and stream.early_verdicts_used == 1  # not judged twice
    assert audio.heard[0] == int(1.2 * RATE)  # the speech and 0.2 s of its pause


async def test_a_not_done_verdict_is_judged_again_on_the_longer_pause() -> None:
    audio = CountingAudio(0.3)
    stream = after_speech(audio, 0.2, early_pause=0.2, text_confirm=1.0)
    await asyncio.sleep(0.05)
    push(stream, frames(0.16, voiced=False))
    event = await stream.predict()
    assert event.end_of_turn_probability < 0.5
    assert audio.heard == [int(1.2 * RATE), int(1.36 * RATE)]


async def test_speech_after_the_early_pause_discards_its_verdict() -> None:
    audio = CountingAudio(0.9)
    stream = after_speech(audio, 0.2, early_pause=0.2)
    push(stream, frames(0.5, voiced=True))  # the caller went on
    push(stream, frames(0.1, voiced=False))
    await stream.predict()
    assert stream.early_verdicts_used == 0
    assert audio.heard[-1] == int(1.8 * RATE)  # judged on everything said


async def test_off_it_waits_to_be_asked() -> None:
    audio = CountingAudio(0.9)
    stream = after_speech(audio, 0.5, early_pause=0.0)
    await asyncio.sleep(0.05)
    assert audio.heard == []
    await stream.predict()
    assert len(audio.heard) == 1 and stream.early_verdicts_used == 0
