"""Session control through a LiveKit room: config messages, chat, relayed data, a text
room, and the dispatch's ``participant`` restriction and tenant limits, each reaching only
the participant it concerns."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.audio_fixtures import wer
from tests.livekit_server import LiveKitTestServer
from tests.room.caller import RoomCaller
from tests.room.worker import (
    GREETER_TENANT,
    GREETING,
    LIMITED_TENANT,
    Worker,
    agent_joined,
    dispatch,
    join,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="package")]

TENANT = f"control{os.getpid()}"


def events(caller: RoomCaller) -> list[dict]:
    return [json.loads(r.body) for r in caller.received if r.topic == "agent.events"]


async def send_config(caller: RoomCaller, agent: str, config: dict) -> None:
    await caller.room.local_participant.publish_data(
        json.dumps(config), reliable=True, topic="agent.config", destination_identities=[agent]
    )


async def chat(caller: RoomCaller, agent: str, text: str) -> None:
    await caller.room.local_participant.send_text(
        text, topic="lk.chat", destination_identities=[agent]
    )


async def test_config_chat_and_relay_reach_only_their_participant(
    lk_server: LiveKitTestServer, worker: Worker
) -> None:
    room = f"{TENANT}-control"
    alice = await join(lk_server, "alice", room)
    bob = await join(lk_server, "bob", room)
    carol = await join(lk_server, "carol", room, mic=False)
    try:
        await dispatch(worker, TENANT, room)
        agent = await agent_joined(lk_server, room)
        await alice.wait_for(alice.reply_track, within=60)
        # a config message: applied to alice's session, acknowledged to alice only
        await send_config(alice, agent, {"tts": {"speed": 1.2}})
        applied = await alice.wait_for(
            lambda: [e for e in events(alice) if e["type"] == "config.applied"]
        )
        assert applied[0]["config"]["tts_speed"] == 1.2
        # a bad one changes nothing and gets a structured error, again to alice only
        await send_config(alice, agent, {"tts": {"speed": 99}})
        errors = await alice.wait_for(lambda: [e for e in events(alice) if e["type"] == "error"])
        assert errors[0]["code"] and errors[0]["field"], errors
        # relay: only the addressed participant receives it, stamped with the sender
        await alice.room.local_participant.publish_data(
            json.dumps({"to": ["carol"], "data": {"hello": "carol"}}),
            reliable=True,
            topic="agent.relay",
            destination_identities=[agent],
        )
        relayed = await carol.wait_for(
            lambda: [json.loads(r.body) for r in carol.received if r.topic == "agent.relay"]
        )
        assert relayed == [{"from": "alice", "data": {"hello": "carol"}}]
        # chat from carol (no microphone, no session yet): a text session, answered on
        # lk.chat to carol
        await chat(carol, agent, "Hello, who are you?")
        answer = await carol.wait_for(lambda: carol.texts("lk.chat"), within=90)
        assert answer[0].sender == agent and answer[0].body.strip()
        # nobody else saw any of it
        for other in (bob,):
            assert not [r for r in other.received if r.topic in ("agent.events", "agent.relay")]
            assert not other.texts("lk.chat")
        assert not [r for r in alice.received if r.topic == "agent.relay"]
        assert not events(carol) or all(e["type"] != "config.applied" for e in events(carol))
    except BaseException:
        if room in lk_server.rooms:
            print(lk_server.rooms[room].describe())
        raise
    finally:
        for caller in (alice, bob, carol):
            await caller.leave()


async def test_text_room_subscribes_to_no_audio_publishes_none_and_answers_chat(
    lk_server: LiveKitTestServer, worker: Worker
) -> None:
    room = f"{TENANT}-text"
    alice = await join(lk_server, "alice", room)  # she publishes a microphone all the same
    try:
        await dispatch(worker, TENANT, room, config={"audio": False})
        agent = await agent_joined(lk_server, room)
        await chat(alice, agent, "What is two plus two?")
        answer = await alice.wait_for(lambda: alice.texts("lk.chat"), within=90)
        assert answer[0].body.strip()
        server_side = lk_server.rooms[room].participants[agent]
        assert server_side.tracks == {}, "a text room's agent published audio"
        assert server_side.subscriber.track_sids == set(), "a text room's agent took audio"
        assert not alice.heard
    finally:
        await alice.leave()


async def test_dispatch_participant_restriction_holds_in_the_room(
    lk_server: LiveKitTestServer, worker: Worker
) -> None:
    room = f"{TENANT}-only"
    alice = await join(lk_server, "alice", room)
    mallory = await join(lk_server, "mallory", room)
    try:
        await dispatch(worker, TENANT, room, participant="alice")
        agent = await agent_joined(lk_server, room)
        await alice.wait_for(alice.reply_track, within=60)
        # mallory gets no session: no reply track, and her chat is refused
        await chat(mallory, agent, "Talk to me instead.")
        refused = await mallory.wait_for(
            lambda: [e for e in events(mallory) if e["type"] == "error"]
        )
        assert refused[0]["code"] == "not_attended", refused
        assert mallory.reply_track() is None and not mallory.texts("lk.chat")
        server_side = lk_server.rooms[room].participants[agent]
        assert [t.info.name for t in server_side.tracks.values()] == ["agent-alice"]
    finally:
        await alice.leave()
        await mallory.leave()


async def test_tenant_limits_hold_in_a_real_room(
    lk_server: LiveKitTestServer, worker: Worker
) -> None:
    tenant = LIMITED_TENANT  # one concurrent job, one session per room
    room, other_room = f"{tenant}-first", f"{tenant}-second"
    alice = await join(lk_server, "alice", room)
    bob = RoomCaller("bob")
    try:
        await dispatch(worker, tenant, room)
        agent = await agent_joined(lk_server, room)
        await alice.wait_for(alice.reply_track, within=60)
        bob = await join(lk_server, "bob", room)
        # the room's one session is alice's: bob gets none, and is told so when he types
        await chat(bob, agent, "Can you hear me?")
        refused = await bob.wait_for(lambda: [e for e in events(bob) if e["type"] == "error"])
        assert refused[0]["code"] == "too_many_sessions", refused
        assert bob.reply_track() is None
        # the tenant's one concurrent job is taken: LiveKit's offer for a second room is
        # refused by the worker and the job stays unassigned
        await dispatch(worker, tenant, other_room)
        await lk_server.wait_for_event("job_unassigned", other_room, within=30)
        assert "rate_limited" in worker.log()
    finally:
        await alice.leave()
        await bob.leave()


async def test_the_tenants_greeting_is_heard_before_the_caller_says_anything(
    lk_server: LiveKitTestServer, worker: Worker, whisper_stt
) -> None:
    room = f"{GREETER_TENANT}-hello"
    alice = await join(lk_server, "alice", room)
    try:
        await dispatch(worker, GREETER_TENANT, room)
        await agent_joined(lk_server, room)
        track = await alice.wait_for(alice.reply_track, within=60)
        said = await alice.wait_for(lambda: alice.agent_transcripts(), within=60)
        assert said[0].body.strip() == GREETING
        await alice.wait_for(lambda: track.quiet_since(0.0, 0.8), within=30)
        heard = whisper_stt.transcribe_array(track.audio().astype(np.float32) / 32768.0)
        assert wer(GREETING, heard) <= 0.2, heard
    finally:
        await alice.leave()
