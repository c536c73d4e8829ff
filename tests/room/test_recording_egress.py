"""Recording through LiveKit egress: the worker asks the server for an audio-only room egress
when a session of a tenant whose policy says ``recording: "egress"`` asks to be recorded, and
stops it when the call ends (the test server records the Twirp requests it receives)."""

from __future__ import annotations

import pytest
from livekit.protocol import egress

from tests.livekit_server import LiveKitTestServer
from tests.room.worker import RECORDER_TENANT, Worker, agent_joined, dispatch, join

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="package")]


async def test_a_recorded_room_gets_an_audio_egress_stopped_when_the_call_ends(
    lk_server: LiveKitTestServer, worker: Worker
) -> None:
    room = f"{RECORDER_TENANT}-call"
    alice = await join(lk_server, "alice", room)
    try:
        await dispatch(worker, RECORDER_TENANT, room, config={"recording": True})
        await agent_joined(lk_server, room)
        _, _, egress_id = await lk_server.wait_for_event("egress_started", room, within=60)
    finally:
        await alice.leave()
    requests = [m for name, m in lk_server.twirp.calls if name.endswith("StartRoomCompositeEgress")]
    assert len(requests) == 1
    request = requests[0]
    assert isinstance(request, egress.RoomCompositeEgressRequest)
    assert request.room_name == room and request.audio_only
    assert request.file_outputs[0].filepath == f"{RECORDER_TENANT}/{{room_name}}-{{time}}.ogg"
    # the caller left, the job ends, the egress is stopped
    _, _, stopped = await lk_server.wait_for_event("egress_stopped", room, within=60)
    assert stopped == egress_id


async def test_a_room_that_does_not_ask_is_not_recorded(
    lk_server: LiveKitTestServer, worker: Worker
) -> None:
    room = f"{RECORDER_TENANT}-quiet"
    alice = await join(lk_server, "alice", room)
    try:
        await dispatch(worker, RECORDER_TENANT, room)
        await agent_joined(lk_server, room)
        await alice.wait_for(alice.reply_track, within=60)  # the session is up
    finally:
        await alice.leave()
    assert not any(
        getattr(m, "room_name", "") == room for name, m in lk_server.twirp.calls if "Egress" in name
    )
