"""Rooms and participants: who is in a room, what they publish, where data goes.

A :class:`Participant` is one signalling connection with its two peer connections
(tests/livekit_server/media.py); a :class:`Room` routes tracks and data between them and
closes itself like LiveKit does: ``departure_timeout`` after the last participant who is not
an agent left, ``empty_timeout`` after creation if nobody came.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRelay
from livekit.protocol import models, rtc

from .media import PublisherPeer, SubscriberPeer

log = logging.getLogger("livekit-test-server")
_counter = itertools.count(1)


def new_sid(prefix: str) -> str:
    return f"{prefix}{next(_counter):04d}{secrets.token_hex(4)}"


@dataclass
class PublishedTrack:
    info: models.TrackInfo
    source: MediaStreamTrack | None = None  # the received track, once media arrives
    relay: MediaRelay = field(default_factory=MediaRelay)


class Participant:
    """One participant's signalling session and media."""

    def __init__(
        self,
        room: Room,
        *,
        identity: str,
        name: str,
        kind: int,
        metadata: str,
        attributes: dict[str, str],
        auto_subscribe: bool,
        client_protocol: int,
        send: Callable[[rtc.SignalResponse], Awaitable[None]],
    ) -> None:
        self.room = room
        self.sid = new_sid("PA_")
        self.identity = identity
        self.name = name
        self.kind = kind
        self.metadata = metadata
        self.attributes = dict(attributes)
        self.auto_subscribe = auto_subscribe
        self.client_protocol = client_protocol
        self.joined_at = time.time()
        self.version = 1
        self.state = models.ParticipantInfo.State.ACTIVE
        self.send = send
        self.tracks: dict[str, PublishedTrack] = {}  # by TR_ sid
        self._cids: dict[str, str] = {}  # client track id -> TR_ sid
        self.publisher = PublisherPeer(self._on_track, self._on_unpublished, self._on_data)
        self.subscriber = SubscriberPeer(self._send_offer)
        self.permission: rtc.SubscriptionPermission | None = None  # None: everyone may
        self.wanted: set[str] = set()  # tracks asked for explicitly (UpdateSubscription)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def is_agent(self) -> bool:
        return self.kind == models.ParticipantInfo.Kind.AGENT

    def info(self) -> models.ParticipantInfo:
        return models.ParticipantInfo(
            sid=self.sid,
            identity=self.identity,
            name=self.name,
            state=self.state,
            kind=self.kind,
            metadata=self.metadata,
            attributes=self.attributes,
            joined_at=int(self.joined_at),
            joined_at_ms=int(self.joined_at * 1000),
            version=self.version,
            is_publisher=bool(self.tracks),
            client_protocol=self.client_protocol,
            permission=models.ParticipantPermission(
                can_subscribe=True, can_publish=True, can_publish_data=True
            ),
            tracks=[t.info for t in self.tracks.values()],
        )

    def spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except (asyncio.CancelledError, ConnectionError):
                pass
            except Exception:
                log.exception("participant task failed", extra={"identity": self.identity})

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- publishing --------------------------------------------------------------------

    def add_track(self, request: rtc.AddTrackRequest) -> models.TrackInfo:
        info = models.TrackInfo(
            sid=new_sid("TR_"),
            type=request.type,
            name=request.name,
            source=request.source,
            muted=request.muted,
            mime_type="audio/opus" if request.type == models.TrackType.AUDIO else "",
            stereo=request.stereo,
            disable_dtx=request.disable_dtx,
            stream=request.stream,
        )
        self._cids[request.cid] = info.sid
        self.tracks[info.sid] = PublishedTrack(info)
        return info

    def _on_track(self, cid: str, track: MediaStreamTrack) -> None:
        sid = self._cids.get(cid)
        published = self.tracks.get(sid) if sid else None
        if published is None:
            log.warning("media for a track never announced", extra={"cid": cid})
            return
        published.source = track
        self.version += 1
        self.spawn(self.room.track_ready(self, published))

    def _on_unpublished(self, cid: str) -> None:
        sid = self._cids.pop(cid, None)
        if sid is not None:
            self.spawn(self.unpublish(sid))

    async def unpublish(self, sid: str) -> None:
        published = self.tracks.pop(sid, None)
        if published is None:
            return
        self.version += 1
        await self.send(
            rtc.SignalResponse(track_unpublished=rtc.TrackUnpublishedResponse(track_sid=sid))
        )
        await self.room.track_gone(self, sid)

    async def set_muted(self, sid: str, muted: bool) -> None:
        published = self.tracks.get(sid)
        if published is None or published.info.muted == muted:
            return
        published.info.muted = muted
        self.version += 1
        await self.room.broadcast_update(self)

    def allows(self, subscriber: Participant, track_sid: str) -> bool:
        """Whether ``subscriber`` may receive this participant's track (its track
        subscription permissions; LiveKit allows everyone until they are set)."""
        if self.permission is None or self.permission.all_participants:
            return True
        for grant in self.permission.track_permissions:
            if grant.participant_identity in ("", subscriber.identity) and (
                grant.participant_sid in ("", subscriber.sid)
            ):
                if grant.all_tracks or track_sid in grant.track_sids:
                    return True
        return False

    async def set_permission(self, permission: rtc.SubscriptionPermission) -> None:
        self.permission = permission
        for other in self.room.others(self):
            for sid, published in list(self.tracks.items()):
                if not self.allows(other, sid):
                    other.spawn(other.unsubscribe(sid))
                elif other.auto_subscribe or sid in other.wanted:
                    other.spawn(other.subscribe(self, published))

    # --- subscribing -------------------------------------------------------------------

    async def _send_offer(self, sdp: str, offer_id: int) -> None:
        await self.send(
            rtc.SignalResponse(offer=rtc.SessionDescription(type="offer", sdp=sdp, id=offer_id))
        )

    async def subscribe(self, publisher: Participant, published: PublishedTrack) -> None:
        if published.source is None or published.info.sid in self.subscriber.track_sids:
            return
        if not publisher.allows(self, published.info.sid):
            return
        if not await self.subscriber.add_track(
            publisher.sid, published.info.sid, published.relay.subscribe(published.source)
        ):
            return
        # the publisher's SDK fires local_track_subscribed on this
        await publisher.send(
            rtc.SignalResponse(track_subscribed=rtc.TrackSubscribed(track_sid=published.info.sid))
        )

    async def unsubscribe(self, track_sid: str) -> None:
        await self.subscriber.remove_track(track_sid)

    async def update_subscription(self, request: rtc.UpdateSubscription) -> None:
        sids = set(request.track_sids)
        for pt in request.participant_tracks:
            sids.update(pt.track_sids)
        for sid in sids:
            if request.subscribe:
                self.wanted.add(sid)  # subscribed as soon as its media arrives
                found = self.room.find_track(sid)
                if found is not None:
                    await self.subscribe(*found)
            else:
                self.wanted.discard(sid)
                await self.unsubscribe(sid)

    # --- data --------------------------------------------------------------------------

    def _on_data(self, raw: bytes, reliable: bool) -> None:
        self.room.route_data(self, raw, reliable)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.publisher.close()
        await self.subscriber.close()


class Room:
    def __init__(
        self,
        name: str,
        *,
        empty_timeout_s: float,
        departure_timeout_s: float,
        on_closed: Callable[[Room], Awaitable[None]],
        metadata: str = "",
    ) -> None:
        self.name = name
        self.sid = new_sid("RM_")
        self.created = time.time()
        self.metadata = metadata
        self.participants: dict[str, Participant] = {}
        self.closed = asyncio.Event()
        self.empty_timeout_s = empty_timeout_s
        self.departure_timeout_s = departure_timeout_s
        self._on_closed = on_closed
        self._streams: dict[str, list[str]] = {}  # text/byte stream id -> destinations
        self._ever_joined = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._schedule_close(empty_timeout_s)

    def info(self) -> models.Room:
        return models.Room(
            sid=self.sid,
            name=self.name,
            empty_timeout=int(self.empty_timeout_s),
            departure_timeout=int(self.departure_timeout_s),
            creation_time=int(self.created),
            creation_time_ms=int(self.created * 1000),
            metadata=self.metadata,
            num_participants=len(self.participants),
            num_publishers=sum(1 for p in self.participants.values() if p.tracks),
        )

    def describe(self) -> str:
        """Who publishes what and who receives it: for a failing test's message."""
        lines = [f"room {self.name} ({self.sid})"]
        for p in self.participants.values():
            tracks = ", ".join(
                f"{t.info.name}={sid}{'' if t.source else ' (no media)'}"
                for sid, t in p.tracks.items()
            )
            lines.append(
                f"  {p.identity} [{'agent' if p.is_agent else 'standard'}] publishes: {tracks}; "
                f"receives: {sorted(p.subscriber.track_sids)}; wants: {sorted(p.wanted)}; "
                f"permission: {'all' if p.permission is None else p.permission}".replace("\n", " ")
            )
        return "\n".join(lines)

    def others(self, participant: Participant) -> list[Participant]:
        return [p for p in self.participants.values() if p is not participant]

    def find_track(self, sid: str) -> tuple[Participant, PublishedTrack] | None:
        for participant in self.participants.values():
            if sid in participant.tracks:
                return participant, participant.tracks[sid]
        return None

    # --- membership --------------------------------------------------------------------

    async def join(self, participant: Participant) -> None:
        old = self.participants.get(participant.identity)
        if old is not None:  # same identity again: the newer connection wins, like LiveKit
            await self.leave(old, reason=models.DisconnectReason.DUPLICATE_IDENTITY)
        self.participants[participant.identity] = participant
        if not participant.is_agent:
            self._ever_joined = True
            self._cancel_close()
        await self.broadcast_update(participant, include_self=False)

    async def leave(
        self,
        participant: Participant,
        *,
        reason: int = models.DisconnectReason.CLIENT_INITIATED,
        tell: bool = False,
    ) -> None:
        if self.participants.get(participant.identity) is not participant:
            return
        del self.participants[participant.identity]
        if tell:
            await _quietly(
                participant.send(
                    rtc.SignalResponse(
                        leave=rtc.LeaveRequest(
                            reason=reason, action=rtc.LeaveRequest.Action.DISCONNECT
                        )
                    )
                )
            )
        participant.state = models.ParticipantInfo.State.DISCONNECTED
        info = participant.info()
        info.disconnect_reason = reason
        update = rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=[info]))
        for other in list(self.participants.values()):
            await _quietly(other.send(update))
            for sid in participant.tracks:
                await _quietly(other.unsubscribe(sid))
        await participant.close()
        if not any(not p.is_agent for p in self.participants.values()) and not self.closed.is_set():
            self._schedule_close(
                self.departure_timeout_s if self._ever_joined else self.empty_timeout_s
            )

    async def close(self, reason: int = models.DisconnectReason.ROOM_DELETED) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self._cancel_close()
        for participant in list(self.participants.values()):
            await self.leave(participant, reason=reason, tell=True)
        await self._on_closed(self)

    def _schedule_close(self, delay_s: float) -> None:
        self._cancel_close()
        loop = asyncio.get_running_loop()
        self._close_timer = loop.call_later(
            delay_s, lambda: asyncio.ensure_future(self.close(models.DisconnectReason.ROOM_CLOSED))
        )

    def _cancel_close(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None

    # --- tracks and updates ------------------------------------------------------------

    async def broadcast_update(
        self, participant: Participant, *, include_self: bool = True
    ) -> None:
        update = rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=[participant.info()]))
        for other in list(self.participants.values()):
            if other is participant and not include_self:
                continue
            await _quietly(other.send(update))

    async def track_ready(self, publisher: Participant, published: PublishedTrack) -> None:
        """Media arrived for an announced track: tell the room, then forward it to those who
        subscribe automatically."""
        await self.broadcast_update(publisher)
        for other in self.others(publisher):
            # subscribe() checks the publisher's permissions
            if other.auto_subscribe or published.info.sid in other.wanted:
                other.spawn(other.subscribe(publisher, published))

    async def track_gone(self, publisher: Participant, sid: str) -> None:
        await self.broadcast_update(publisher)
        for other in self.others(publisher):
            other.spawn(other.unsubscribe(sid))

    def route_data(self, sender: Participant, raw: bytes, reliable: bool) -> None:
        """Forward a data packet to its destinations (everyone else when it names none).

        Text and byte streams name their destinations in the header only: chunks and the
        trailer follow the header's route by stream id.
        """
        packet = models.DataPacket()
        try:
            packet.ParseFromString(raw)
        except Exception:
            log.warning("undecodable data packet dropped", extra={"from": sender.identity})
            return
        packet.participant_identity = sender.identity
        packet.participant_sid = sender.sid
        kind = packet.WhichOneof("value")
        destinations = list(packet.destination_identities)
        if kind == "user":
            packet.user.participant_identity = sender.identity
            packet.user.participant_sid = sender.sid
            destinations = destinations or list(packet.user.destination_identities)
        elif kind == "stream_header":
            self._streams[packet.stream_header.stream_id] = destinations
        elif kind == "stream_chunk":
            destinations = self._streams.get(packet.stream_chunk.stream_id, destinations)
        elif kind == "stream_trailer":
            destinations = self._streams.pop(packet.stream_trailer.stream_id, destinations)
        out = packet.SerializeToString()
        for other in self.others(sender):
            if not destinations or other.identity in destinations:
                other.subscriber.send(out, reliable=reliable)


async def _quietly(awaitable: Awaitable[object]) -> None:
    try:
        await awaitable
    except Exception:
        pass
