"""What a participant's session shows in a room besides its audio, addressed to that
participant only.

livekit-agents' RoomIO assumes one session per room: it streams the agent's and the user's
transcripts to every participant, and writes the agent's state to one attribute
(``lk.agent.state``) of the agent participant. With one session per participant that means
each caller reads the others' conversations and sees the agent's state flip between
sessions. Here:

- **transcripts** (``lk.transcription`` text streams, LiveKit's own format: segment id,
  ``lk.transcription_final``, the transcribed track) go only to the participant concerned;
- **agent state** is an attribute per participant, ``agent.state.<identity>``; the standard
  ``lk.agent.state`` is written too while the room has a single session (what LiveKit's
  client components read), and removed while it has several;
- **the agent's reply track** ``agent-<identity>`` may be subscribed by that participant
  only (LiveKit track subscription permissions).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable

from livekit import rtc
from livekit.agents.voice import io
from livekit.agents.voice.events import AgentStateChangedEvent, UserInputTranscribedEvent

from agent.log import logger

TRANSCRIPTION_TOPIC = "lk.transcription"
SEGMENT_ID = "lk.segment_id"
FINAL = "lk.transcription_final"
TRACK_ID = "lk.transcribed_track_id"
ROOM_STATE = "lk.agent.state"
STATE_PREFIX = "agent.state."
ROOM_REQUEST_TIMEOUT_S = 3.0


def reply_track_name(identity: str) -> str:
    return f"agent-{identity}"


async def unpublish_reply_track(room: rtc.Room, identity: str) -> None:
    """Take ``agent-<identity>`` out of the room once its session ended: RoomIO closes
    the track's source but leaves it published, so every caller who left would leave a
    dead track behind for the rest of the room's life."""
    sid = _track_sid(room.local_participant, reply_track_name(identity))
    if sid is None or not room.isconnected():
        return
    try:
        # bounded: when the room is going away the server may never answer, and the job's
        # shutdown must not wait on it
        await asyncio.wait_for(room.local_participant.unpublish_track(sid), ROOM_REQUEST_TIMEOUT_S)
    except Exception:
        logger.debug("reply track not unpublished", exc_info=True)


def _segment_id() -> str:
    return f"SG_{uuid.uuid4().hex[:12]}"


def _track_sid(participant: rtc.Participant, name: str) -> str | None:
    for publication in participant.track_publications.values():
        if publication.name == name:
            return str(publication.sid)
    return None


class ParticipantTranscript(io.TextOutput):
    """The agent's words, streamed as they are spoken to one participant (a text stream
    per reply segment, closed with ``lk.transcription_final: true``)."""

    def __init__(self, room: rtc.Room, identity: str) -> None:
        super().__init__(label="ParticipantTranscript", next_in_chain=None)
        self._room = room
        self._identity = identity
        self._writer: rtc.TextStreamWriter | None = None
        self._opening: asyncio.Lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    async def capture_text(self, text: str) -> None:
        async with self._opening:
            if self._writer is None:
                attributes = {SEGMENT_ID: _segment_id(), FINAL: "false"}
                track = _track_sid(self._room.local_participant, reply_track_name(self._identity))
                if track is not None:
                    attributes[TRACK_ID] = track
                self._writer = await self._room.local_participant.stream_text(
                    topic=TRANSCRIPTION_TOPIC,
                    destination_identities=[self._identity],
                    attributes=attributes,
                )
            writer = self._writer
        await writer.write(text)

    def flush(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        task = asyncio.create_task(_close(writer, {FINAL: "true"}))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _close(writer: rtc.TextStreamWriter, attributes: dict[str, str]) -> None:
    try:
        await writer.aclose(attributes=attributes)
    except Exception:  # the participant left; the transcript has no one to go to
        logger.debug("transcript stream not closed", exc_info=True)


class UserTranscripts:
    """The participant's own words as the STT heard them, sent back to that participant
    only: one text stream per update, interim then final, sharing a segment id."""

    def __init__(self, room: rtc.Room, identity: str) -> None:
        self._room = room
        self._identity = identity
        self._segment = _segment_id()
        self._tasks: set[asyncio.Task[None]] = set()

    def on_transcribed(self, ev: UserInputTranscribedEvent) -> None:
        if not ev.transcript:
            return
        attributes = {SEGMENT_ID: self._segment, FINAL: "true" if ev.is_final else "false"}
        participant = self._room.remote_participants.get(self._identity)
        if participant is not None:
            track = next(
                (
                    str(p.sid)
                    for p in participant.track_publications.values()
                    if p.kind == rtc.TrackKind.KIND_AUDIO
                ),
                None,
            )
            if track is not None:
                attributes[TRACK_ID] = track
        if ev.is_final:
            self._segment = _segment_id()
        task = asyncio.create_task(self._send(ev.transcript, attributes))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, text: str, attributes: dict[str, str]) -> None:
        try:
            # a stream rather than send_text: only a stream names the participant as the
            # sender, which is how clients tell the user's words from the agent's
            writer = await self._room.local_participant.stream_text(
                topic=TRANSCRIPTION_TOPIC,
                destination_identities=[self._identity],
                attributes=attributes,
                sender_identity=self._identity,
            )
            await writer.write(text)
            await writer.aclose()
        except Exception:
            logger.debug("user transcript not sent", exc_info=True)


class AgentStates:
    """The agent participant's state attributes for every session of the room.

    Updates are merged and written by one task at a time: ``set_attributes`` waits for the
    server's answer, and the newest state of each session is all that matters.
    """

    def __init__(self, room: rtc.Room, session_count: Callable[[], int]) -> None:
        self._room = room
        self._session_count = session_count
        self._pending: dict[str, str] = {}
        self._writer: asyncio.Task[None] | None = None

    def listener(self, identity: str) -> Callable[[AgentStateChangedEvent], None]:
        def changed(ev: AgentStateChangedEvent) -> None:
            self.set(identity, ev.new_state)

        return changed

    def set(self, identity: str, state: str) -> None:
        """``state`` "" removes the participant's attribute (its session ended)."""
        self._pending[STATE_PREFIX + identity] = state
        # the room-wide attribute means something only while one conversation runs
        self._pending[ROOM_STATE] = state if self._session_count() == 1 and state else ""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            current = self._room.local_participant.attributes
            # an empty value deletes: skip deleting what is not there
            batch = {k: v for k, v in batch.items() if v or k in current}
            if not batch or not self._room.isconnected():
                continue
            try:
                await asyncio.wait_for(
                    self._room.local_participant.set_attributes(batch), ROOM_REQUEST_TIMEOUT_S
                )
            except Exception:
                logger.debug("agent state not published", exc_info=True)

    async def aclose(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer, ROOM_REQUEST_TIMEOUT_S)


class ReplyTrackPermissions:
    """Only ``<identity>`` may subscribe to ``agent-<identity>``; nobody else hears a
    conversation that is not theirs. Applied before the first track is published."""

    def __init__(self, room: rtc.Room) -> None:
        self._room = room
        room.local_participant.set_track_subscription_permissions(
            allow_all_participants=False, participant_permissions=[]
        )
        room.on("local_track_published", self._on_published)
        room.on("local_track_unpublished", self._on_published)

    def _on_published(self, *_: object) -> None:
        self.apply()

    def apply(self) -> None:
        permissions = [
            rtc.ParticipantTrackPermission(
                participant_identity=publication.name.removeprefix("agent-"),
                allow_all=False,
                allowed_track_sids=[publication.sid],
            )
            for publication in self._room.local_participant.track_publications.values()
            if publication.name.startswith("agent-")
        ]
        self._room.local_participant.set_track_subscription_permissions(
            allow_all_participants=False, participant_permissions=permissions
        )

    def close(self) -> None:
        self._room.off("local_track_published", self._on_published)
        self._room.off("local_track_unpublished", self._on_published)
