"""The server's media end: one aiortc peer connection per direction and participant.

LiveKit runs two peer connections per participant (after the SDK's fallback from its
single-connection mode): the *publisher* connection, offered by the client, carries what the
participant sends (audio tracks, the ``_reliable``/``_lossy`` data channels); the
*subscriber* connection, offered by the server, carries what it receives (other
participants' tracks, and data forwarded to it on the server's own data channels).

Every connection is created without ICE servers: aiortc would otherwise ask a public STUN
server for a reflexive candidate, and test traffic must stay on the test's own network.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

NEGOTIATION_TIMEOUT_S = 60.0  # a loaded 2-core machine answers slowly


def _peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


@dataclass(frozen=True)
class Section:
    """What the server needs from one m-section of a client's offer."""

    mid: str
    cid: str | None  # the client's track id (from ``a=msid:<stream> <cid>``)
    sending: bool  # sendonly/sendrecv: the client publishes on it


def offer_sections(sdp: str) -> list[Section]:
    """The m-sections of an offer, with the track id libwebrtc wrote for each.

    libwebrtc writes ``a=msid:- <cid>`` under a bare ``a=msid-semantic: WMS``, so aiortc
    gives the received track a random id: the cid can only be matched through the mid.
    """
    sections: list[Section] = []
    current: list[str] | None = None

    def close(lines: list[str] | None) -> None:
        if lines is None:
            return
        mid = cid = None
        sending = False
        for line in lines:
            if line.startswith("a=mid:"):
                mid = line[6:].strip()
            elif line.startswith("a=msid:"):
                parts = line[7:].split()
                cid = parts[1] if len(parts) == 2 else cid
            elif line.strip() in ("a=sendonly", "a=sendrecv"):
                sending = True
        if mid is not None:
            sections.append(Section(mid, cid, sending))

    for line in sdp.splitlines():
        if line.startswith("m="):
            close(current)
            current = [line]
        elif current is not None:
            current.append(line)
    close(current)
    return sections


class _Candidates:
    """ICE candidates trickled by the client. Those that arrive before the remote
    description is set are buffered: aiortc drops them with only a warning."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self._pc = pc
        self._early: list[object] = []

    async def add(self, candidate_init: str) -> None:
        try:
            init = json.loads(candidate_init)
        except ValueError:
            return
        text = str(init.get("candidate") or "")
        if not text:
            return  # end of candidates
        candidate = candidate_from_sdp(text.removeprefix("candidate:"))
        candidate.sdpMid = init.get("sdpMid")
        candidate.sdpMLineIndex = init.get("sdpMLineIndex")
        if self._pc.remoteDescription is None:
            self._early.append(candidate)
        else:
            await self._pc.addIceCandidate(candidate)

    async def flush(self) -> None:
        early, self._early = self._early, []
        for candidate in early:
            await self._pc.addIceCandidate(candidate)  # type: ignore[arg-type]


class PublisherPeer:
    """The connection a participant publishes on: the client offers, the server answers.

    ``on_track(cid, track)`` fires for each received audio track, ``on_unpublished(cid)``
    when a re-offer stops sending it, ``on_data(raw, reliable)`` for each data packet.
    """

    def __init__(
        self,
        on_track: Callable[[str, MediaStreamTrack], None],
        on_unpublished: Callable[[str], None],
        on_data: Callable[[bytes, bool], None],
    ) -> None:
        self.pc = _peer()
        self._candidates = _Candidates(self.pc)
        self._sections: dict[str, Section] = {}
        self._on_track = on_track
        self._on_unpublished = on_unpublished
        self._on_data = on_data
        self.pc.on("track", self._track)
        self.pc.on("datachannel", self._channel)

    async def answer(self, offer_sdp: str) -> str:
        previous = self._sections
        self._sections = {s.mid: s for s in offer_sections(offer_sdp)}
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await self._candidates.flush()
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        # a re-offer that no longer sends a track it sent before: the track is unpublished
        for mid, old in previous.items():
            new = self._sections.get(mid)
            if old.sending and old.cid and (new is None or not new.sending or new.cid != old.cid):
                self._on_unpublished(old.cid)
        return self.pc.localDescription.sdp

    async def add_candidate(self, candidate_init: str) -> None:
        await self._candidates.add(candidate_init)

    def _track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            return
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track and transceiver.mid is not None:
                section = self._sections.get(transceiver.mid)
                if section is not None and section.cid:
                    self._on_track(section.cid, track)
                return

    def _channel(self, channel: RTCDataChannel) -> None:
        reliable = channel.label != "_lossy"

        @channel.on("message")
        def _message(message: bytes | str) -> None:
            if isinstance(message, bytes):
                self._on_data(message, reliable)

    async def close(self) -> None:
        await self.pc.close()


class SubscriberPeer:
    """The connection a participant receives on: the server offers, the client answers.

    ``send_offer(sdp, offer_id)`` sends an offer over signalling; the client's answer comes
    back through :meth:`on_answer`. Negotiations are serialized: aiortc (like any peer)
    takes one offer at a time.
    """

    def __init__(self, send_offer: Callable[[str, int], Awaitable[None]]) -> None:
        self.pc = _peer()
        self._candidates = _Candidates(self.pc)
        self._send_offer = send_offer
        self._lock = asyncio.Lock()
        self._answer: asyncio.Future[str] | None = None
        self._offer_id = 0
        self._senders: dict[str, RTCRtpSender] = {}
        # the server opens these; the SDK reads data only from them
        self._channels = {
            True: self.pc.createDataChannel("_reliable"),
            False: self.pc.createDataChannel("_lossy", ordered=False, maxRetransmits=0),
        }
        self._backlog: dict[bool, list[bytes]] = {True: [], False: []}
        for reliable, channel in self._channels.items():
            channel.on("open", lambda r=reliable: self._flush(r))

    @property
    def track_sids(self) -> set[str]:
        return set(self._senders)

    async def negotiate(self) -> None:
        async with self._lock:
            await self._negotiate()

    async def _negotiate(self) -> None:
        if self.pc.connectionState == "closed":
            return
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self._offer_id += 1
        self._answer = asyncio.get_running_loop().create_future()
        await self._send_offer(self.pc.localDescription.sdp, self._offer_id)
        sdp = await asyncio.wait_for(self._answer, NEGOTIATION_TIMEOUT_S)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
        await self._candidates.flush()

    def on_answer(self, sdp: str) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(sdp)

    async def add_candidate(self, candidate_init: str) -> None:
        await self._candidates.add(candidate_init)

    async def add_track(
        self, participant_sid: str, track_sid: str, track: MediaStreamTrack
    ) -> bool:
        """Forward ``track`` and renegotiate; the client finds publication and publisher
        from the msid ``<PA_sid>|<TR_sid> <TR_sid>``. Transceivers change only between
        negotiations: one added while an offer is out never carries media."""
        async with self._lock:
            if track_sid in self._senders:
                return False
            # a new transceiver every time (addTrack would reuse a stopped one's m-line,
            # and the SDK does not take a new track on a reused m-line)
            sender = self.pc.addTransceiver(track, direction="sendonly").sender
            sender._stream_id = f"{participant_sid}|{track_sid}"
            sender._track_id = track_sid
            self._senders[track_sid] = sender
            await self._negotiate()
            return True

    async def remove_track(self, track_sid: str) -> bool:
        async with self._lock:
            sender = self._senders.pop(track_sid, None)
            if sender is None:
                return False
            track = sender.track
            sender.replaceTrack(None)
            if track is not None:
                track.stop()  # the relay's proxy: the source goes on for the others
            for transceiver in self.pc.getTransceivers():
                if transceiver.sender is sender:
                    transceiver.direction = "inactive"
            await self._negotiate()
            return True

    def send(self, raw: bytes, *, reliable: bool) -> None:
        channel = self._channels[reliable]
        if channel.readyState == "open":
            channel.send(raw)
        elif channel.readyState == "connecting":
            self._backlog[reliable].append(raw)

    def _flush(self, reliable: bool) -> None:
        backlog, self._backlog[reliable] = self._backlog[reliable], []
        for raw in backlog:
            self._channels[reliable].send(raw)

    async def close(self) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()
        await self.pc.close()
