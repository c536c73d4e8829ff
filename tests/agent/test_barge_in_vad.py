"""The session's VAD hands the session its start-of-speech decision as an interruption
trigger at once, and asks for the barge-in minimum while the agent speaks (real Silero on
espeak-ng speech)."""

from __future__ import annotations

import asyncio

import numpy as np
from livekit.agents import vad

from agent.session.barge_in_vad import BargeInVAD
from tests.audio_fixtures import silence, speak, to_frames

TURN_MIN, BARGE_IN_MIN = 0.1, 0.4


async def start_and_trigger(
    detector: BargeInVAD, samples: np.ndarray
) -> tuple[vad.VADEvent, vad.VADEvent | None]:
    """Feed the audio a frame at a time, and stop feeding at the start of speech: the
    start event, and the per-window event the session can interrupt on that follows it
    with no more audio (None: the session would have to wait for the next window)."""
    stream = detector.stream()
    events: asyncio.Queue[vad.VADEvent] = asyncio.Queue()

    async def collect() -> None:
        async for ev in stream:
            events.put_nowait(ev)

    collector = asyncio.create_task(collect())
    try:
        for frame in to_frames(samples, 16000, ms=20):
            stream.push_frame(frame)
            while True:
                try:
                    ev = await asyncio.wait_for(events.get(), 0.02)
                except TimeoutError:
                    break
                if ev.type != vad.VADEventType.START_OF_SPEECH:
                    continue
                try:
                    following = await asyncio.wait_for(events.get(), 0.5)
                except TimeoutError:
                    return ev, None
                return ev, following
        raise AssertionError("no start of speech")
    finally:
        collector.cancel()
        await stream.aclose()


def assert_trigger(following: vad.VADEvent | None, minimum: float) -> None:
    assert following is not None, "the trigger waited for another window of audio"
    assert following.type == vad.VADEventType.INFERENCE_DONE
    assert following.speaking and following.speech_duration >= minimum, following


async def test_the_start_of_speech_is_at_once_an_interruption_trigger() -> None:
    speech = np.concatenate([silence(0.5, 16000), speak("Wait, stop please."), silence(1, 16000)])
    detector = BargeInVAD.load(
        min_speech_duration=TURN_MIN, min_silence_duration=0.3, barge_in_min_speech=BARGE_IN_MIN
    )
    start, following = await start_and_trigger(detector, speech)
    assert_trigger(following, TURN_MIN)
    assert TURN_MIN <= start.speech_duration < BARGE_IN_MIN

    # while the agent speaks the VAD asks for the barge-in minimum, and its decision still
    # reaches the session at once
    detector.agent_speaking(True)
    assert detector.min_speech == BARGE_IN_MIN
    start, following = await start_and_trigger(detector, speech)
    assert_trigger(following, BARGE_IN_MIN)
    assert start.speech_duration >= BARGE_IN_MIN

    # a config message's new turn minimum holds outside barge-in only
    detector.update_options(min_speech_duration=0.2, min_silence_duration=0.3)
    assert detector.min_speech == BARGE_IN_MIN
    detector.agent_speaking(False)
    assert detector.min_speech == 0.2
    start, following = await start_and_trigger(detector, speech)
    assert_trigger(following, 0.2)
    assert start.speech_duration < BARGE_IN_MIN
