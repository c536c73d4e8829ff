"""Recording through LiveKit egress: the worker asks the server for an audio-only room egress
when a session of a tenant whose policy says ``recording: "egress"`` asks to be recorded, and
stops it when the call ends (the test server records the Twirp requests it receives)."""

from __future__ import annotations

import asyncio

import pytest
from livekit.protocol import egress

from tests.livekit_server import LiveKitTestServer
from tests.room.worker import RECORDER_TENANT, Worker, agent_joined, dispatch, join

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="package")]


async def test_a_room_that_asks_gets_an_audio_egress_stopped_when_the_call_ends(
    lk_server: LiveKitTestServer, worker: Worker
) -> None:
    recorded, quiet = f"{RECORDER_TENANT}-call", f"{RECORDER_TENANT}-quiet"
    alice, bob = await asyncio.gather(
        join(lk_server, "alice", recorded), join(lk_server, "bob", quiet)
    )
    try:
        # the same tenant, the same policy: only the room whose config asks is recorded
        await dispatch(worker, RECORDER_TENANT, recorded, config={"recording": True})
        await dispatch(worker, RECORDER_TENANT, quiet)
        await asyncio.gather(agent_joined(lk_server, recorded), agent_joined(lk_server, quiet))
        _, _, egress_id = await lk_server.wait_for_event("egress_started", recorded, within=60)
        await bob.wait_for(bob.reply_track, within=60)  # bob's session is up, unrecorded
    finally:
        await asyncio.gather(alice.leave(), bob.leave())
    requests = [m for name, m in lk_server.twirp.calls if name.endswith("StartRoomCompositeEgress")]
    assert [r.room_name for r in requests] == [recorded]
    request = requests[0]
    assert isinstance(request, egress.RoomCompositeEgressRequest) and request.audio_only
    assert request.file_outputs[0].filepath == f"{RECORDER_TENANT}/{{room_name}}-{{time}}.ogg"
    # the caller left, the job ends, the egress is stopped
    _, _, stopped = await lk_server.wait_for_event("egress_stopped", recorded, within=60)
    assert stopped == egress_id
