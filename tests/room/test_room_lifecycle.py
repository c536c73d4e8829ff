"""A room's life through the real worker: a caller who mutes, unmutes and republishes, one
who leaves, the room deleted under a running job, and a SIGTERM during a live room."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from livekit import api

from tests.audio_fixtures import speak
from tests.livekit_server import LiveKitTestServer
from tests.room.caller import RoomCaller
from tests.room.worker import (
    API_KEY,
    API_SECRET,
    Worker,
    agent_joined,
    dispatch,
    join,
    start_worker,
    stop_worker,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="package")]

TENANT = f"life{os.getpid()}"


async def turn(caller: RoomCaller, question: str) -> str:
    """Ask ``question``; the agent's reply transcript once it has been given."""
    _, ended = await caller.say(speak(question))
    replies = await caller.wait_for(lambda: caller.agent_transcripts(ended), within=120)
    return str(replies[0].body)


async def delete_room(server: LiveKitTestServer, room: str) -> None:
    async with api.LiveKitAPI(server.url.replace("ws://", "http://"), API_KEY, API_SECRET) as lk:
        await lk.room.delete_room(api.DeleteRoomRequest(room=room))


async def test_muted_unmuted_and_republished_caller_keeps_being_heard(
    lk_server: LiveKitTestServer, worker: Worker
) -> None:
    room = f"{TENANT}-mute"
    alice = await join(lk_server, "alice", room)
    try:
        await dispatch(worker, TENANT, room)
        await agent_joined(lk_server, room)
        await alice.wait_for(alice.reply_track, within=60)
        alice.mute(True)
        await asyncio.sleep(1.0)
        alice.mute(False)
        assert await turn(alice, "What color is the sky?")
        # a new microphone track: the agent subscribes to it and her session goes on
        await alice.unpublish_mic()
        await asyncio.sleep(1.0)
        await alice.publish_mic()
        assert await turn(alice, "What do you like to do on weekends?")
    except BaseException:
        if room in lk_server.rooms:
            print(lk_server.rooms[room].describe())
        raise
    finally:
        await alice.leave()


async def test_leaving_closes_the_session_and_deleting_the_room_ends_the_job(
    lk_server: LiveKitTestServer, worker: Worker
) -> None:
    room = f"{TENANT}-leave"
    alice = await join(lk_server, "alice", room)
    bob = await join(lk_server, "bob", room)
    try:
        await dispatch(worker, TENANT, room)
        agent = await agent_joined(lk_server, room)
        await alice.wait_for(alice.reply_track, within=60)
        await bob.wait_for(bob.reply_track, within=60)
        before = await worker.metric("voice_active_sessions")
        await bob.leave()
        # bob's session is closed and forgotten: logged, counted, his reply track gone
        await alice.wait_for(
            lambda: any(
                r.get("participant") == "bob" and r.get("reason") == "participant left"
                for r in worker.records("voice session detached")
            ),
            within=30,
        )
        names = lambda: [  # noqa: E731
            t.info.name for t in lk_server.rooms[room].participants[agent].tracks.values()
        ]
        await alice.wait_for(lambda: names() == ["agent-alice"], within=30)
        assert await worker.metric("voice_active_sessions") == before - 1
        # alice is still served
        assert await turn(alice, "How many legs does a spider have?")
        # deleting the room disconnects everyone and ends the job
        await delete_room(lk_server, room)
        ended = await lk_server.wait_for_event("job_ended", room, within=60)
        assert ended[2].endswith("JS_SUCCESS"), ended
        assert await worker.metric("voice_active_sessions") == before - 2
    finally:
        await alice.leave()
        await bob.leave()


async def test_sigterm_during_a_live_room_drains_and_exits_zero_when_the_room_ends(
    lk_server: LiveKitTestServer, cache_dir: Path
) -> None:
    draining = await start_worker(lk_server, cache_dir, AGENT_NAME="draining-agent")
    room = f"{TENANT}-drain"
    alice = await join(lk_server, "alice", room)
    try:
        await dispatch(draining, TENANT, room)
        await agent_joined(lk_server, room)
        await alice.wait_for(alice.reply_track, within=60)
        os.kill(draining.proc.pid, signal.SIGTERM)
        await asyncio.sleep(2.0)
        assert draining.proc.returncode is None, "the worker left a live room"
        # the conversation goes on while the worker drains
        assert await turn(alice, "What color is the sky?")
        await alice.leave()
        await delete_room(lk_server, room)
        code = await asyncio.wait_for(draining.proc.wait(), 60)
        assert code == 0, draining.log()[-3000:]
    finally:
        await alice.leave()
        await stop_worker(draining)
