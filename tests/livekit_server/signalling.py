"""``/rtc``: one participant's signalling websocket (binary ``SignalRequest`` in,
``SignalResponse`` out)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web
from livekit import api
from livekit.protocol import models, rtc

from .room import Participant, log

if TYPE_CHECKING:
    from .server import LiveKitTestServer

SERVER_VERSION = "1.9.0"  # the SDK parses it as semver and panics on anything else
PING_INTERVAL_S = 5
PING_TIMEOUT_S = 15
KINDS = {
    "": models.ParticipantInfo.Kind.STANDARD,
    "standard": models.ParticipantInfo.Kind.STANDARD,
    "agent": models.ParticipantInfo.Kind.AGENT,
    "sip": models.ParticipantInfo.Kind.SIP,
    "ingress": models.ParticipantInfo.Kind.INGRESS,
    "egress": models.ParticipantInfo.Kind.EGRESS,
}


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("access_token", "")


async def handle_rtc(server: LiveKitTestServer, request: web.Request) -> web.StreamResponse:
    try:
        claims = server.verifier.verify(bearer(request))
    except Exception:
        return web.Response(status=401, text="invalid token")
    video = claims.video
    if video is None or not video.room_join or not video.room or not claims.identity:
        return web.Response(status=401, text="token grants no room")
    room = server.room(video.room, create=True)
    ws = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024)
    await ws.prepare(request)
    lock = asyncio.Lock()

    async def send(message: rtc.SignalResponse) -> None:
        async with lock:
            if not ws.closed:
                await ws.send_bytes(message.SerializeToString())

    participant = Participant(
        room,
        identity=claims.identity,
        name=claims.name,
        kind=KINDS.get(claims.kind or "", models.ParticipantInfo.Kind.STANDARD),
        metadata=claims.metadata,
        attributes=claims.attributes or {},
        auto_subscribe=request.query.get("auto_subscribe", "1") not in ("0", "false"),
        client_protocol=int(request.query.get("client_protocol", "0") or 0),
        send=send,
    )
    await send(
        rtc.SignalResponse(
            join=rtc.JoinResponse(
                room=room.info(),
                participant=participant.info(),
                other_participants=[p.info() for p in room.participants.values()],
                server_version=SERVER_VERSION,
                server_info=models.ServerInfo(version=SERVER_VERSION, protocol=16),
                # the client negotiates its publisher connection at once and connect()
                # waits only for that one
                subscriber_primary=False,
                ping_interval=PING_INTERVAL_S,
                ping_timeout=PING_TIMEOUT_S,
            )
        )
    )
    await room.join(participant)
    server.note(
        "agent_joined" if participant.is_agent else "joined", room.name, participant.identity
    )
    participant.spawn(participant.subscriber.negotiate())
    if participant.auto_subscribe:
        for other in room.others(participant):
            for published in list(other.tracks.values()):
                participant.spawn(participant.subscribe(other, published))
    try:
        async for message in ws:
            if message.type != WSMsgType.BINARY:
                continue
            request_msg = rtc.SignalRequest()
            try:
                request_msg.ParseFromString(message.data)
            except Exception:
                log.warning("undecodable signal request", extra={"identity": claims.identity})
                continue
            if await _dispatch(participant, request_msg):
                break
    finally:
        await room.leave(participant)
        server.note("left", room.name, participant.identity)
        if not ws.closed:
            await ws.close()
    return ws


async def _dispatch(p: Participant, msg: rtc.SignalRequest) -> bool:
    """Handle one request; True when the participant leaves."""
    kind = msg.WhichOneof("message")
    if kind == "offer":
        sdp = await p.publisher.answer(msg.offer.sdp)
        await p.send(
            rtc.SignalResponse(
                answer=rtc.SessionDescription(type="answer", sdp=sdp, id=msg.offer.id)
            )
        )
    elif kind == "answer":
        p.subscriber.on_answer(msg.answer.sdp)
    elif kind == "trickle":
        target = p.subscriber if msg.trickle.target == rtc.SignalTarget.SUBSCRIBER else p.publisher
        await target.add_candidate(msg.trickle.candidateInit)
    elif kind == "add_track":
        info = p.add_track(msg.add_track)
        await p.send(
            rtc.SignalResponse(
                track_published=rtc.TrackPublishedResponse(cid=msg.add_track.cid, track=info)
            )
        )
    elif kind == "mute":
        await p.set_muted(msg.mute.sid, msg.mute.muted)
    elif kind == "subscription":
        p.spawn(p.update_subscription(msg.subscription))
    elif kind == "update_metadata":
        update = msg.update_metadata
        if update.metadata:
            p.metadata = update.metadata
        if update.name:
            p.name = update.name
        for key, value in update.attributes.items():
            if value:
                p.attributes[key] = value
            else:  # an empty value deletes the attribute
                p.attributes.pop(key, None)
        p.version += 1
        await p.send(
            rtc.SignalResponse(
                request_response=rtc.RequestResponse(
                    request_id=update.request_id, reason=rtc.RequestResponse.Reason.OK
                )
            )
        )
        await p.room.broadcast_update(p)
    elif kind == "subscription_permission":
        await p.set_permission(msg.subscription_permission)
    elif kind == "ping_req":
        await p.send(
            rtc.SignalResponse(
                pong_resp=rtc.Pong(
                    last_ping_timestamp=msg.ping_req.timestamp,
                    timestamp=int(asyncio.get_running_loop().time() * 1000),
                )
            )
        )
    elif kind == "ping":
        await p.send(rtc.SignalResponse(pong=msg.ping))
    elif kind == "leave":
        return True
    # track_setting, update_layers, sync_state, simulate and the
    # data-track requests change nothing an audio test can observe
    return False


def agent_token(
    server: LiveKitTestServer, *, room: str, identity: str, name: str, attributes: dict[str, str]
) -> str:
    """The token an assigned job joins with: an agent participant of ``room``."""
    return (
        api.AccessToken(server.api_key, server.api_secret)
        .with_identity(identity)
        .with_name(name)
        .with_kind("agent")
        .with_attributes(attributes)
        .with_grants(
            api.VideoGrants(
                room_join=True,
                room=room,
                agent=True,
                can_publish=True,
                can_subscribe=True,
                can_publish_data=True,
                can_update_own_metadata=True,
            )
        )
        .to_jwt()
    )
