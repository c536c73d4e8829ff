"""The agent speaks first, prompts a quiet caller and hangs up on one who stays away."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent.conversation.idle import IDLE_REASON, IdlePolicy
from agent.obs.metrics import IDLE_PROMPTS
from agent.session.config import SessionConfig
from agent.session.voice_manager import SessionIO, VoiceManager
from agent.sim.io import PacedAudioInput, PlayoutSegment, RecordingAudioOutput
from plugins._common.audio import resample
from tests.audio_fixtures import speak, trim_silence, wer

pytestmark = pytest.mark.slow

GREETING = "Hello, thank you for calling the test line."
PROMPT = "Are you still there?"
GOODBYE = "I will hang up now. Goodbye!"


def heard(stt: object, segment: PlayoutSegment) -> str:
    pcm = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in segment.frames])
    audio = resample(pcm.astype(np.float32) / 32768.0, segment.frames[0].sample_rate, 16000)
    return stt.transcribe_array(audio)  # type: ignore[attr-defined]


async def test_greeting_then_idle_prompts_then_goodbye_and_the_session_ends(
    engines, whisper_stt
) -> None:
    idle = IdlePolicy(after_s=1.0, prompts=2, prompt=PROMPT, goodbye=GOODBYE)
    manager = VoiceManager(engines, instructions="Answer briefly.", idle=idle)
    mic, speaker = PacedAudioInput(), RecordingAudioOutput()
    prompts_before = IDLE_PROMPTS._value.get()
    detached: list[str | None] = []
    manager.on("session_detached", lambda entry: detached.append(entry.close_reason))
    try:
        entry = await manager.attach(
            "carol", SessionIO(mic, speaker), config=SessionConfig(greeting=GREETING)
        )
        silence = asyncio.create_task(mic.play_silence(60.0))  # the caller says nothing
        try:
            await asyncio.wait_for(entry.closed.wait(), timeout=60)
        finally:
            silence.cancel()
        said = [heard(whisper_stt, seg) for seg in speaker.segments]
        assert len(said) == 4, said  # greeting, two prompts, goodbye
        for text, expected in zip(said, [GREETING, PROMPT, PROMPT, GOODBYE], strict=True):
            assert wer(expected, text) <= 0.25, (expected, text)
        # each prompt came after a silence of about USER_IDLE_S, not at once
        gaps = [
            b.started_at - (a.started_at + a.duration)
            for a, b in zip(speaker.segments, speaker.segments[1:], strict=False)
        ]
        assert all(g >= 0.9 for g in gaps), gaps
        assert IDLE_PROMPTS._value.get() == prompts_before + 2
        assert detached == [IDLE_REASON] and "carol" not in manager.sessions
    finally:
        await manager.aclose()


async def test_a_caller_who_answers_the_prompt_is_not_hung_up_on(engines, whisper_stt) -> None:
    # longer than the end-of-turn silence timeout (2 s): the caller's answer is a turn
    # before the quiet after it counts
    idle = IdlePolicy(after_s=3.0, prompts=1, prompt=PROMPT, goodbye=GOODBYE)
    manager = VoiceManager(engines, instructions="Answer in one short sentence.", idle=idle)
    mic, speaker = PacedAudioInput(), RecordingAudioOutput()
    try:
        entry = await manager.attach("dave", SessionIO(mic, speaker))
        silence = asyncio.create_task(mic.play_silence(60.0))
        try:
            await asyncio.wait_for(speaker.wait_for_segments(1), timeout=30)  # the prompt
            await speaker.wait_for_playout()
        finally:
            silence.cancel()
        assert wer(PROMPT, heard(whisper_stt, speaker.segments[0])) <= 0.25
        await mic.play(trim_silence(speak("Yes, I am here.", rate=16000)), 16000)
        tail = asyncio.create_task(mic.play_silence(60.0))
        try:
            await asyncio.wait_for(speaker.wait_for_segments(2), timeout=60)  # a reply
            await speaker.wait_for_playout()
            assert entry.idle is not None and entry.idle.unanswered == 0  # answered
            # quiet again: the count started over, so this is one more prompt, no goodbye
            await asyncio.wait_for(speaker.wait_for_segments(3), timeout=30)
            await speaker.wait_for_playout()
        finally:
            tail.cancel()
        assert wer(PROMPT, heard(whisper_stt, speaker.segments[2])) <= 0.25
        assert "dave" in manager.sessions and not entry.closed.is_set()
    finally:
        await manager.aclose()
