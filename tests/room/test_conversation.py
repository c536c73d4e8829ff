"""Conversations through a LiveKit room: dispatch, two callers at once, each hearing only
their own reply, transcripts and agent state addressed per participant."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from tests.audio_fixtures import speak, wer
from tests.livekit_server import LiveKitTestServer
from tests.room.caller import RoomCaller
from tests.room.worker import Worker, agent_joined, dispatch, join

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="package")]

TENANT = f"rooms{os.getpid()}"
# longer replies make the word error rate of the heard reply a steadier measure
INSTRUCTIONS = "You are a helpful assistant. Answer every question in two full sentences."


async def ask(caller: RoomCaller, question: str) -> float:
    """Say ``question``; returns when the last voiced sample was sent."""
    _, ended = await caller.say(speak(question))
    return ended


async def reply_after(
    caller: RoomCaller, since: float, agent: str
) -> tuple[str, np.ndarray, float]:
    """Wait for the agent's reply to this caller: its final transcript, the audio heard on
    the caller's own reply track, and when that audio became audible."""
    track = await caller.wait_for(caller.reply_track, within=30)
    first = await caller.wait_for(lambda: track.first_audible(since), within=90)
    texts = await caller.wait_for(lambda: caller.agent_transcripts(since), within=90)
    # the reply is over when the track has been quiet for a second
    await caller.wait_for(
        lambda: (times := track.audible_times(first)) and track.frames[-1][0] - times[-1] > 1.0,
        within=90,
    )
    return texts[0].body, track.audio(since), first


async def test_two_callers_ask_at_once_and_each_hears_only_their_reply(
    lk_server: LiveKitTestServer, worker: Worker, whisper_stt
) -> None:
    room = f"{TENANT}-two"
    alice = await join(lk_server, "alice", room)
    bob = await join(lk_server, "bob", room)
    try:
        await dispatch(worker, TENANT, room, instructions=INSTRUCTIONS)
        agent = await agent_joined(lk_server, room)
        await alice.wait_for(alice.reply_track, within=60)
        await bob.wait_for(bob.reply_track, within=60)
        ended = await asyncio.gather(
            ask(alice, "What do you like to do on weekends?"),
            ask(bob, "What is your favorite food and why?"),
        )
        (a_text, a_audio, a_first), (b_text, b_audio, b_first) = await asyncio.gather(
            reply_after(alice, ended[0], agent), reply_after(bob, ended[1], agent)
        )
        for name, text, audio, first, end in (
            ("alice", a_text, a_audio, a_first, ended[0]),
            ("bob", b_text, b_audio, b_first, ended[1]),
        ):
            heard = whisper_stt.transcribe_array(audio.astype(np.float32) / 32768.0)
            print(
                f"{name}: voice-to-voice at the client {1000 * (first - end):.0f} ms; "
                f"agent said {text!r}; heard {heard!r}"
            )
            # tiny.en on a 15 s reply heard through Opus on a loaded machine drops or
            # repeats a few words (0.32 seen with the suite on two workers); the other
            # caller's reply scores near 1.0, so this still tells whose reply was heard
            assert wer(text, heard) <= 0.35, (text, heard)
        # each hears their own reply track, never the other's (callers do hear each other's
        # microphones: that is the room, not the agent)
        assert "agent-bob" not in alice.heard and "agent-alice" not in bob.heard
        # and nothing of a session reaches the room at large (livekit-agents' session host)
        for caller in (alice, bob):
            assert not [r for r in caller.received if r.topic.startswith("lk.agent.session")]
        # transcripts reach only the participant they concern
        for caller, other_question in ((alice, "favorite food"), (bob, "weekend")):
            for r in caller.texts("lk.transcription"):
                assert other_question.lower() not in r.body.lower(), (caller.identity, r)
        assert a_text not in [r.body for r in bob.received if isinstance(r.body, str)]
        assert b_text not in [r.body for r in alice.received if isinstance(r.body, str)]
        # agent state is per participant; the room-wide attribute is absent with two sessions
        attributes = alice.room.remote_participants[agent].attributes
        assert "agent.state.alice" in attributes and "agent.state.bob" in attributes, attributes
        assert "lk.agent.state" not in attributes, attributes
    except BaseException:
        for caller in (alice, bob):
            print(caller.identity, {n: h.sid for n, h in caller.heard.items()})
            for r in caller.received:
                print("  ", r.topic, r.sender, repr(r.body)[:60], r.attributes)
        if room in lk_server.rooms:
            print(lk_server.rooms[room].describe())
        raise
    finally:
        await alice.leave()
        await bob.leave()


async def test_barge_in_through_the_room_stops_the_reply_the_caller_hears(
    lk_server: LiveKitTestServer, worker: Worker
) -> None:
    room = f"{TENANT}-barge"
    alice = await join(lk_server, "alice", room)
    try:
        await dispatch(worker, TENANT, room)
        await agent_joined(lk_server, room)
        before = await worker.metric("voice_barge_in_latency_seconds_count")
        # this question mostly gets a reply of several sentences from the packaged model;
        # a reply over before the interruption is asked for again (the model's length, not
        # the barge-in, decided that one)
        for _ in range(3):
            ms = await alice.barge_in(
                speak("What do you like to do on weekends?"),
                speak("Wait, stop please."),
                after_s=1.0,
            )
            if ms is not None or "over before" not in alice.barge_in_missed:
                break
        assert ms is not None, alice.barge_in_missed
        print(
            f"barge-in through the room: the agent's audio stopped {ms:.0f} ms after the "
            "interruption's first voiced sample, as heard by the caller"
        )
        # the worker saw user speech over its reply and stopped it (not the reply ending)
        assert await worker.metric("voice_barge_in_latency_seconds_count") > before
    finally:
        await alice.leave()
