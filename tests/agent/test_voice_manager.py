"""The VoiceManager driven room-less with real models: barge-in, backchannels, the end notice.

Two turns in one session on the real models are in tests/agent/test_recording.py (each
word checked in the recorded audio), two callers at once in tests/room/test_conversation.py
(through a room), and the manager's routing and history logic on fakes in
test_voice_manager_logic.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from agent.session.voice_manager import ParticipantSession, SessionIO, VoiceManager
from agent.sim.io import PacedAudioInput, RecordingAudioOutput
from agent.sim.probe import TurnProbe
from tests.audio_fixtures import speak, trim_silence

pytestmark = pytest.mark.slow

INSTRUCTIONS = "You are a friendly voice assistant. Answer in one short sentence."


@dataclass
class Caller:
    """One simulated participant: a microphone, a loudspeaker and what was heard."""

    mic: PacedAudioInput
    speaker: RecordingAudioOutput
    probe: TurnProbe
    attached: ParticipantSession

    @classmethod
    async def join(cls, manager: VoiceManager, identity: str) -> Caller:
        mic, speaker, probe = PacedAudioInput(), RecordingAudioOutput(), TurnProbe()
        attached = await manager.attach(identity, SessionIO(mic, speaker))
        probe.watch(attached.session)
        return cls(mic, speaker, probe, attached)

    async def ask(self, text: str, *, within: float = 60.0) -> None:
        """Say ``text`` and wait until the agent's reply has finished playing."""
        replies_before = len(self.speaker.segments)
        await self.mic.play_silence(0.3)
        await self.mic.play(trim_silence(speak(text, rate=16000)), 16000)
        silence = asyncio.create_task(self.mic.play_silence(within))
        try:
            async with asyncio.timeout(within):
                await self.speaker.wait_for_segments(replies_before + 1)
                await self.speaker.wait_for_playout()
        finally:
            silence.cancel()

    async def talk_over(self, agent_text: str, user_text: str, *, after: float) -> Any:
        """The agent starts saying ``agent_text``; ``after`` seconds into it the user says
        ``user_text``. Returns the agent's speech handle once its playout has ended."""
        await self.mic.play_silence(0.3)
        handle = self.attached.session.say(agent_text)
        await asyncio.wait_for(self.speaker.first_frame.wait(), timeout=30)
        await self.mic.play_silence(after)
        await self.mic.play(trim_silence(speak(user_text, rate=16000)), 16000)
        tail = asyncio.create_task(self.mic.play_silence(60.0))
        try:
            await asyncio.wait_for(handle.wait_for_playout(), timeout=60)
        finally:
            tail.cancel()
        return handle


async def test_barge_in_stops_agent_audio(engines) -> None:
    manager = VoiceManager(engines, instructions=INSTRUCTIONS)
    try:
        caller = await Caller.join(manager, "alice")
        long_text = (
            "Let me tell you everything about the history of the city. It was founded long "
            "ago by traders who came along the river, and it grew slowly for centuries. "
            "Later the railway arrived and the town became an important market, with "
            "merchants from every corner of the country selling grain, cloth and tools."
        )
        # past the echo-canceller warm-up, during which the agent cannot be interrupted
        handle = await caller.talk_over(
            long_text, "Wait, stop please.", after=engines.settings.aec_warmup_s + 0.3
        )
    finally:
        await manager.aclose()

    seg = caller.speaker.segments[0]
    assert handle.interrupted
    assert seg.interrupted_at is not None, "the agent kept talking over the user"
    assert seg.stopped_at is not None
    barge_in_ms = (seg.stopped_at - caller.mic.speech_started_at[-1]) * 1000
    print(f"barge-in: agent audio stopped {barge_in_ms:.0f} ms after the user started")
    # the VAD needs BARGE_IN_MIN_SPEECH_S of speech before it may interrupt; allow it plus
    # the VAD's own frames and a loaded 2-core machine
    assert 0 < barge_in_ms < 1500
    assert seg.duration > seg.stopped_at - seg.started_at  # audio was cut, not finished


async def test_a_backchannel_does_not_take_the_turn(engines) -> None:
    manager = VoiceManager(engines, instructions=INSTRUCTIONS)
    try:
        caller = await Caller.join(manager, "alice")
        text = (
            "Our opening hours are from nine in the morning until six in the evening on "
            "weekdays, and from ten until four on Saturdays. On Sundays and public holidays "
            "the shop stays closed, but the online store takes orders at any time."
        )
        handle = await caller.talk_over(text, "Yeah.", after=engines.settings.aec_warmup_s + 0.5)
        users = [
            i for i in caller.attached.session.history.items if getattr(i, "role", None) == "user"
        ]
    finally:
        await manager.aclose()
    seg = caller.speaker.segments[0]
    assert not handle.interrupted, "a backchannel took the turn"
    assert seg.interrupted_at is None
    assert not users  # no user turn was committed
    # the VAD paused the agent (barge-in stays fast) and the reply resumed
    assert seg.paused_at and seg.resumed_at, (seg.paused_at, seg.resumed_at)


@pytest.mark.slow
async def test_a_job_ending_early_says_its_notice_before_the_voice_session_closes(
    engines: Any,
) -> None:
    """A job that lost its tenant slot (finding 11) speaks the notice, then ends."""
    manager = VoiceManager(engines, instructions="Answer in one short sentence.")
    mic, speaker = PacedAudioInput(), RecordingAudioOutput()
    await manager.attach("alice", SessionIO(mic, speaker))
    silence = asyncio.create_task(mic.play_silence(60))
    try:
        await asyncio.wait_for(manager.end_all("This call has to end now. Goodbye."), 60)
        assert manager.sessions == {}
        pcm, rate = speaker.pcm()
        assert pcm.size / rate > 1.0  # the notice was played out (> 1 s) before closing
        assert np.abs(pcm).max() > 1000
    finally:
        silence.cancel()
        await manager.aclose()
