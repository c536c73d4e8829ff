"""The VoiceManager's own logic on fake engines (tests/fakes.py): turns, routing between
participants, barge-in, live config, detach. Seconds in all; the same behaviours with the
real models are in test_voice_manager.py (slow)."""

from __future__ import annotations

import asyncio

from agent.session.config import SessionConfig
from agent.session.voice_manager import ParticipantSession, SessionIO, VoiceManager
from agent.sim.io import PacedAudioInput, RecordingAudioOutput
from tests.fakes import Caller, FakeEngines, FakeSessions, FakeTTS, scaled

INSTRUCTIONS = "Answer briefly."


async def join(
    manager: VoiceManager, identity: str, config: SessionConfig | None = None
) -> tuple[ParticipantSession, RecordingAudioOutput]:
    speaker = RecordingAudioOutput()
    attached = await manager.attach(identity, SessionIO(PacedAudioInput(), speaker), config=config)
    return attached, speaker


async def heard(speaker: RecordingAudioOutput, replies: int, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        await speaker.wait_for_segments(replies)
        await speaker.wait_for_playout()


async def test_a_turn_reaches_the_llm_and_its_reply_is_spoken() -> None:
    engines, alice = FakeEngines(), Caller()
    manager = VoiceManager(engines, instructions=INSTRUCTIONS, sessions=FakeSessions(alice))
    try:
        attached, speaker = await join(manager, "alice")
        await alice.say("where is the station")
        await heard(speaker, 1)
        assert engines.fake_llm.requests == ["where is the station"]
        voice = engines.fake_voices[-1]
        assert " ".join(voice.spoken).split() == "You said: where is the station.".split()
        assert speaker.segments[0].duration > 0
    finally:
        await manager.aclose()


async def test_each_participant_hears_only_the_answer_to_their_own_words() -> None:
    engines, alice, bob = FakeEngines(), Caller(), Caller()
    manager = VoiceManager(engines, instructions=INSTRUCTIONS, sessions=FakeSessions(alice, bob))
    try:
        a, alice_speaker = await join(manager, "alice")
        b, bob_speaker = await join(manager, "bob")
        await asyncio.gather(alice.say("tea please"), bob.say("coffee for me"))
        await asyncio.gather(heard(alice_speaker, 1), heard(bob_speaker, 1))
        assert sorted(engines.fake_llm.requests) == ["coffee for me", "tea please"]
        alice_voice, bob_voice = engines.fake_voices
        assert "tea" in " ".join(alice_voice.spoken) and "coffee" not in " ".join(
            alice_voice.spoken
        )
        assert "coffee" in " ".join(bob_voice.spoken) and "tea" not in " ".join(bob_voice.spoken)
    finally:
        await manager.aclose()


async def test_speaking_over_the_reply_stops_it() -> None:
    engines, alice = FakeEngines(), Caller()
    engines.fake_llm.reply = lambda text: " ".join(["word"] * 40)  # ten seconds of reply
    manager = VoiceManager(engines, instructions=INSTRUCTIONS, sessions=FakeSessions(alice))
    try:
        attached, speaker = await join(manager, "alice")
        await alice.say("tell me everything")
        async with asyncio.timeout(10):
            await speaker.wait_for_segments(1)
        await asyncio.sleep(scaled(1.0))
        await alice.say("stop stop stop", seconds=1.0)
        async with asyncio.timeout(10):
            await speaker.wait_for_playout()  # ends at the interruption, or at the reply's end
        assert speaker.segments[0].interrupted_at is not None, "the agent talked on"
        played = speaker.segments[0].interrupted_at - speaker.segments[0].started_at
        assert played < scaled(40 * 0.25) / 2  # cut well before its end
    finally:
        await manager.aclose()


async def test_a_config_message_changes_the_voice_speed_for_the_next_reply() -> None:
    engines, alice = FakeEngines(), Caller()
    manager = VoiceManager(engines, instructions=INSTRUCTIONS, sessions=FakeSessions(alice))
    try:
        attached, speaker = await join(manager, "alice")
        await manager.configure("alice", SessionConfig(tts_speed=2.0))
        await alice.say("how fast")
        await heard(speaker, 1)
        assert isinstance(engines.fake_voices[-1], FakeTTS) and engines.fake_voices[-1].speed == 2.0
        assert engines.fake_voices[-1].spoken  # the reply was spoken by the new voice
    finally:
        await manager.aclose()


async def test_detach_closes_the_session_and_frees_the_identity() -> None:
    engines, alice, again = FakeEngines(), Caller(), Caller()
    manager = VoiceManager(engines, instructions=INSTRUCTIONS, sessions=FakeSessions(alice, again))
    detached: list[str] = []
    manager.on("session_detached", lambda entry: detached.append(entry.identity))
    try:
        await join(manager, "alice")
        await manager.detach("alice")
        assert detached == ["alice"] and "alice" not in manager.sessions
        _, speaker = await join(manager, "alice")  # the same identity may come back
        await again.say("back again")
        await heard(speaker, 1)
        assert engines.fake_llm.requests[-1] == "back again"
    finally:
        await manager.aclose()


async def test_two_turns_build_the_history_in_order() -> None:
    engines, alice = FakeEngines(), Caller()
    manager = VoiceManager(engines, instructions=INSTRUCTIONS, sessions=FakeSessions(alice))
    try:
        attached, speaker = await join(manager, "alice")
        for n, words in enumerate(["first question", "second question"], start=1):
            await alice.say(words)
            await heard(speaker, n)
        added = asyncio.Event()
        attached.session.on("conversation_item_added", lambda _: added.set())
        async with asyncio.timeout(5):  # the reply joins the history after its playout
            while len([i for i in attached.session.history.items if i.type == "message"]) < 4:
                added.clear()
                await added.wait()
        said = [
            (i.role, i.text_content) for i in attached.session.history.items if i.type == "message"
        ]
        assert [role for role, _ in said] == ["user", "assistant", "user", "assistant"]
        assert said[0][1] == "first question" and said[2][1] == "second question"
        assert engines.fake_llm.requests == ["first question", "second question"]
    finally:
        await manager.aclose()
