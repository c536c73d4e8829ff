"""A caller in a LiveKit room: a real ``livekit.rtc`` client that speaks into a microphone
track in real time and records everything it hears and receives, with arrival times.

Used by the room tests and by ``benchmarks/load.py --room``. Times are ``time.monotonic()``
seconds, the clock of the asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr
from livekit import rtc

MIC_RATE = 48000
HEAR_RATE = 16000
FRAME_S = 0.01
VOICED = 300  # int16 amplitude above which a sample counts as speech (ours or the agent's)
AUDIBLE_RMS = 200.0  # a received 10 ms frame louder than this is the agent speaking


@dataclass
class Heard:
    """One audio track the caller receives."""

    name: str
    publisher: str
    sid: str
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (arrival, 16 kHz)

    def audible_times(self, since: float = 0.0) -> list[float]:
        return [
            t
            for t, pcm in self.frames
            if t >= since
            and pcm.size
            and float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > AUDIBLE_RMS
        ]

    def first_audible(self, since: float = 0.0) -> float | None:
        times = self.audible_times(since)
        return times[0] if times else None

    def speaking_at(self, t: float) -> bool:
        """Whether the track was audible within 100 ms before ``t``."""
        return any(t - 0.1 <= a <= t for a in self.audible_times(t - 0.1))

    def quiet_since(self, t: float, gap: float) -> bool:
        """Whether the last audible frame after ``t`` is ``gap`` seconds behind the last
        frame received (the agent finished speaking)."""
        times = self.audible_times(t)
        return bool(times) and self.frames[-1][0] - times[-1] >= gap

    def stopped_after(self, t: float, gap: float = 0.4) -> float | None:
        """When the audio that was playing at ``t`` stopped (its last audible frame's end,
        followed by ``gap`` seconds of quiet); None while it plays on."""
        times = self.audible_times(t - 0.1)
        if not times:
            return None
        for a, b in zip(times, times[1:], strict=False):
            if a >= t and b - a > gap:
                return a + FRAME_S
        if times[-1] >= t and self.frames[-1][0] - times[-1] > gap:
            return times[-1] + FRAME_S
        return None

    def audio(self, since: float = 0.0, until: float = float("inf")) -> np.ndarray:
        parts = [pcm for t, pcm in self.frames if since <= t <= until]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


@dataclass
class RoomTurn:
    """One question and its reply, as the caller experienced them."""

    voice_to_voice_ms: float | None  # end of our speech -> first audible reply
    reply: str  # the agent's final transcript of its reply
    error: str | None = None


@dataclass
class Received:
    topic: str
    sender: str
    body: Any  # text, or bytes for data packets
    attributes: dict[str, str]
    at: float


class RoomCaller:
    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.room = rtc.Room()
        self.heard: dict[str, Heard] = {}
        self.received: list[Received] = []
        self.attribute_changes: list[tuple[float, str, dict[str, str]]] = []
        self.speech_started: list[float] = []
        self.speech_ended: list[float] = []
        self.barge_in_missed = ""  # why the last barge_in() returned None
        self._source: rtc.AudioSource | None = None
        self._mic: rtc.LocalTrackPublication | None = None
        self._queue: deque[np.ndarray] = deque()
        self._pump: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()
        self._ended: asyncio.Future[tuple[float, float]] | None = None

    # --- connection ----------------------------------------------------------------------

    async def connect(self, url: str, token: str) -> None:
        self.room.on("track_subscribed", self._on_track)
        self.room.on("track_published", self._on_published)
        self.room.on("data_received", self._on_data)
        self.room.on("participant_attributes_changed", self._on_attributes)
        # lk.agent.session: what livekit-agents' session host would stream to the room
        for topic in ("lk.transcription", "lk.chat", "agent.events", "lk.agent.session"):
            self.room.register_text_stream_handler(topic, self._on_text)
        # a caller listens to the agent only: other callers' microphones would cost the
        # server an Opus transcode each, and say nothing about the agent
        await self.room.connect(url, token, rtc.RoomOptions(auto_subscribe=False))
        for participant in self.room.remote_participants.values():
            for publication in participant.track_publications.values():
                self._on_published(publication, participant)

    async def publish_mic(self) -> None:
        self._source = rtc.AudioSource(MIC_RATE, 1, queue_size_ms=100)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self._source)
        self._mic = await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        if self._pump is None:
            self._pump = asyncio.create_task(self._run_mic())

    async def unpublish_mic(self) -> None:
        if self._mic is not None:
            await self.room.local_participant.unpublish_track(self._mic.sid)
            self._mic = None

    def mute(self, muted: bool) -> None:
        assert self._mic is not None and self._mic.track is not None
        if muted:
            self._mic.track.mute()
        else:
            self._mic.track.unmute()

    async def leave(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        for task in list(self._tasks):
            task.cancel()
        await self.room.disconnect()

    # --- speaking ------------------------------------------------------------------------

    async def say(self, speech_16k: np.ndarray) -> tuple[float, float]:
        """Speak ``speech_16k`` (int16) in real time; returns when its last sample went
        out, with the times its first and last voiced samples were sent."""
        pcm = soxr.resample(speech_16k.astype(np.float32), HEAR_RATE, MIC_RATE)
        pcm = np.clip(pcm, -32768, 32767).astype(np.int16)
        per = int(MIC_RATE * FRAME_S)
        pcm = np.concatenate([pcm, np.zeros((-pcm.size) % per, dtype=np.int16)])
        done = asyncio.get_running_loop().create_future()
        frames = [pcm[i : i + per] for i in range(0, pcm.size, per)]
        for frame in frames:
            self._queue.append(frame)
        self._queue.append(np.zeros(0, dtype=np.int16))  # marker: the utterance ended
        self._ended = done
        return await done

    async def _run_mic(self) -> None:
        """One 10 ms frame every 10 ms: speech when queued, silence otherwise (a real
        microphone never stops, and end-of-turn detection needs the silence)."""
        assert self._source is not None
        per = int(MIC_RATE * FRAME_S)
        silence = np.zeros(per, dtype=np.int16)
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        first: float | None = None
        last: float | None = None
        while True:
            frame = self._queue.popleft() if self._queue else silence
            if frame.size == 0:  # end of an utterance
                if first is not None and last is not None:
                    self.speech_started.append(first)
                    self.speech_ended.append(last)
                    if self._ended is not None and not self._ended.done():
                        self._ended.set_result((first, last))
                first = last = None
                continue
            now = time.monotonic()
            voiced = np.flatnonzero(np.abs(frame) > VOICED)
            if voiced.size:
                first = first if first is not None else now + voiced[0] / MIC_RATE
                last = now + (voiced[-1] + 1) / MIC_RATE
            if self._source is not None:
                await self._source.capture_frame(rtc.AudioFrame(frame.tobytes(), MIC_RATE, 1, per))
            deadline += FRAME_S
            await asyncio.sleep(max(0.0, deadline - loop.time()))

    # --- receiving -----------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_published(
        self, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        # every track the agent publishes, the other callers' replies included: the
        # agent's track permissions, not the caller's restraint, must keep those out
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            publication.set_subscribed(True)

    def _on_track(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        heard = self.heard.setdefault(
            publication.name, Heard(publication.name, participant.identity, publication.sid)
        )
        self._spawn(self._listen(track, heard))
        self._changed.set()

    async def _listen(self, track: rtc.Track, heard: Heard) -> None:
        async for event in rtc.AudioStream(track, sample_rate=HEAR_RATE, num_channels=1):
            pcm = np.frombuffer(event.frame.data, dtype=np.int16).copy()
            heard.frames.append((time.monotonic(), pcm))

    def _on_text(self, reader: rtc.TextStreamReader, sender: str) -> None:
        async def read() -> None:
            text = await reader.read_all()
            info = reader.info
            self.received.append(
                Received(info.topic, sender, text, dict(info.attributes or {}), time.monotonic())
            )
            self._changed.set()

        self._spawn(read())

    def _on_data(self, packet: rtc.DataPacket) -> None:
        sender = packet.participant.identity if packet.participant else ""
        self.received.append(
            Received(packet.topic or "", sender, packet.data, {}, time.monotonic())
        )
        self._changed.set()

    def _on_attributes(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        self.attribute_changes.append((time.monotonic(), participant.identity, dict(changed)))
        self._changed.set()

    # --- waiting -------------------------------------------------------------------------

    async def wait_for(self, condition: Callable[[], Any], within: float = 60.0) -> Any:
        """Wait until ``condition()`` returns something truthy; returns it."""
        async with asyncio.timeout(within):
            while True:
                value = condition()
                if value:
                    return value
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.1)

    def texts(self, topic: str) -> list[Received]:
        return [r for r in self.received if r.topic == topic]

    def reply_track(self) -> Heard | None:
        return self.heard.get(f"agent-{self.identity}")

    def agent_transcripts(self, since: float = 0.0, *, final: bool = True) -> list[Received]:
        """The agent's reply transcripts (a transcript names the track it transcribes: the
        reply track for the agent's words, the caller's microphone for theirs)."""
        track = self.reply_track()
        return [
            r
            for r in self.texts("lk.transcription")
            if track is not None
            and r.at >= since
            and r.attributes.get("lk.transcribed_track_id") == track.sid
            and (not final or r.attributes.get("lk.transcription_final") == "true")
        ]

    # --- conversations -------------------------------------------------------------------

    async def ask(self, speech_16k: np.ndarray, *, within: float = 120.0) -> RoomTurn:
        """Say ``speech_16k`` and wait for the whole reply on the caller's reply track."""
        track = await self.wait_for(self.reply_track, within=within)
        _, ended = await self.say(speech_16k)
        try:
            first = await self.wait_for(lambda: track.first_audible(ended), within=within)
            replies = await self.wait_for(lambda: self.agent_transcripts(ended), within=within)
            await self.wait_for(lambda: track.quiet_since(first, 1.0), within=within)
        except TimeoutError:
            return RoomTurn(None, "", "no reply")
        return RoomTurn((first - ended) * 1000, str(replies[0].body))

    async def barge_in(
        self, ask_long: np.ndarray, interruption: np.ndarray, *, after_s: float = 1.0
    ) -> float | None:
        """Ask for a long reply and talk over it ``after_s`` seconds into it. Returns ms
        from the first voiced sample of the interruption to the end of the agent's audio
        as this caller heard it; None when there was no reply, when it was over before the
        interruption, or when it never stopped."""
        track = await self.wait_for(self.reply_track, within=60)
        _, ended = await self.say(ask_long)
        try:
            await self.wait_for(lambda: track.first_audible(ended), within=120)
        except TimeoutError:
            self.barge_in_missed = "no reply"
            return None
        await asyncio.sleep(after_s)
        started, _ = await self.say(interruption)
        if not track.speaking_at(started):
            self.barge_in_missed = "the reply was over before the interruption"
            return None
        try:
            stopped = await self.wait_for(lambda: track.stopped_after(started), within=60)
        except TimeoutError:
            self.barge_in_missed = "the reply never stopped"
            return None
        # let the agent answer the interruption before the next turn
        with contextlib.suppress(TimeoutError):
            await self.wait_for(lambda: track.quiet_since(stopped, 1.5), within=60)
        return (stopped - started) * 1000
