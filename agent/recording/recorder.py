"""Recording one participant's session: stereo OGG/Opus audio and its transcript.

The audio is livekit-agents' own ``RecorderIO``, used per session rather than per job (its
built-in use records only a job's primary session, so with a session per participant it
would capture the first caller only): it taps the session's audio input after the noise
filter (what the STT heard, channel 0) and its audio output as played (channel 1, so a reply
cut short by barge-in is recorded as far as it was heard), places both on one timeline and
encodes in a thread every 2.5 s (bounded memory).

A destination that fills up or fails stops the recording and never the call. A watch checks
the free space every second and stops the audio while ``RECORDING_MIN_FREE_MB`` are still
free, so the file ends as a valid OGG and the transcript, which goes on, can say where the
audio stops; a write that fails anyway (read-only, quota) ends the encoder, which reports
it. Either way it is counted, logged and marked as a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
from livekit.agents import AgentSession
from livekit.agents.voice.recorder_io import RecorderIO
from livekit.agents.voice.recorder_io.recorder_io import _Captured, _EndRun, _Track

from agent.log import logger
from agent.obs.metrics import RECORDINGS
from agent.recording.archive import S3Archive, S3Options
from agent.recording.store import RecordingFiles, RecordingStore
from agent.recording.transcript import TranscriptWriter
from agent.settings import Settings

# the recorder's timeline pieces: livekit-agents' own (pinned to 1.8 in pyproject.toml)
RESAMPLER_LAG_S = 0.1  # how long a channel's resampler may hold samples back


class WatchedRecorder(RecorderIO):
    """RecorderIO whose encoder writes each Ogg page as it is made, and reports a failure.

    RecorderIO's own encoder opens the file with ffmpeg's defaults, which keep the whole
    recording in memory until the call ends (0 bytes on disk while it runs, everything
    lost with the process); the calls this worker records last as long as callers talk. So
    the encoding loop is this class's: the same queue and timeline, written with
    ``flush_packets`` (every page reaches the disk as it is made: memory stays bounded and a
    crash keeps the audio up to the last seconds), and a failure (a full disk, a read-only
    file system) goes to ``on_failure`` instead of only a log line.
    """

    def __init__(self, *, agent_session: AgentSession[Any], on_failure: Callable[[str], None]):
        super().__init__(agent_session=agent_session)
        self._on_failure = on_failure

    def _encode_thread(self) -> None:
        path, t0, rate = self.output_path, self.recording_started_at, self._sample_rate
        assert path is not None and t0 is not None
        tracks = [_Track(sample_rate=rate, t0=t0) for _ in range(2)]
        written = 0  # samples per channel in the file
        try:
            with av.open(str(path), mode="w", format="ogg", options={"flush_packets": "1"}) as out:
                stream: Any = out.add_stream("libopus", rate=rate, layout="stereo")
                while (item := self._q.get()) is not None:
                    if isinstance(item, _Captured):
                        tracks[item.channel].push(item.started_at, item.frame)
                    elif isinstance(item, _EndRun):
                        tracks[item.channel].end_run()
                    else:
                        until = _settled(tracks, round((item.until - t0) * rate), rate)
                        if until > written:
                            block = np.stack([track.take(written, until) for track in tracks])
                            frame = av.AudioFrame.from_ndarray(
                                block, format="fltp", layout="stereo"
                            )
                            frame.sample_rate = rate
                            for packet in stream.encode(frame):
                                out.mux(packet)
                            written = until
                for packet in stream.encode(None):
                    out.mux(packet)
        except Exception as e:
            self._loop.call_soon_threadsafe(self._on_failure, f"{type(e).__name__}: {e}")
        finally:
            self._loop.call_soon_threadsafe(self._encoder_done)

    def _encoder_done(self) -> None:
        if not self._close_fut.done():  # what aclose() waits for
            self._close_fut.set_result(None)


def _settled(tracks: list[_Track], until: int, rate: int) -> int:
    """How far both channels can be written: a channel whose open run reaches ``until``
    holds the end back to where it reaches; one that stopped short of it (its source went
    quiet) has its resampler tail placed now, before the write moves past it."""
    for track in tracks:
        through = track.placed_through
        if through is None:
            continue
        if through >= until - round(RESAMPLER_LAG_S * rate):
            until = min(until, through)
        else:
            track.end_run()
    return until


class SessionRecording:
    def __init__(
        self,
        session: AgentSession[Any],
        files: RecordingFiles,
        meta: dict[str, Any],
        *,
        min_free_bytes: int = 0,
        archive: S3Archive | None = None,
    ) -> None:
        self.session = session
        self._archive = archive
        self.files = files
        self._recorder = WatchedRecorder(agent_session=session, on_failure=self._failed)
        self.transcript = TranscriptWriter(files.transcript, started_at=time.time(), meta=meta)
        self.failed = False
        self.stopped = asyncio.Event()  # set when the audio stops before the call ends
        self._closed = False
        self._min_free = min_free_bytes
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Tap the running session's audio and start writing."""
        session, recorder = self.session, self._recorder
        if session.input.audio is None or session.output.audio is None:
            raise RuntimeError("a recording needs a voice session (audio in and out)")
        session.input.audio = recorder.record_input(session.input.audio)
        session.output.audio = recorder.record_output(session.output.audio)
        await recorder.start(output_path=self.files.audio)
        self.transcript.started_at = recorder.recording_started_at or self.transcript.started_at
        self.transcript.watch(session)
        self.transcript.checkpoint()
        if self._min_free > 0:
            self._watch = asyncio.create_task(self._watch_space())
        RECORDINGS.labels("started").inc()
        logger.info("recording started", extra={"recording": self.files.id})

    async def _watch_space(self) -> None:
        folder = self.files.audio.parent
        while not self.failed:
            await asyncio.sleep(1.0)
            try:
                free = shutil.disk_usage(folder).free
            except OSError as e:
                free, reason = 0, str(e)
            else:
                reason = f"less than {self._min_free // (1 << 20)} MB free"
            if free < self._min_free:
                self._failed(reason)
                # end the audio file properly while there is room for its last pages
                await self._recorder.aclose()
                return

    def _failed(self, error: str) -> None:
        if self._closed or self.failed:
            return
        self.failed = True
        self.stopped.set()
        RECORDINGS.labels("failed").inc()
        logger.error(
            "recording stopped: its destination failed; the call goes on",
            extra={"recording": self.files.id, "error": error[:300]},
        )
        self.transcript.mark_gap(f"audio not written from here on ({error[:120]})")

    async def aclose(self) -> None:
        if self._closed:
            return
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self._recorder.aclose()
        self._closed = True
        self.transcript.close()
        if not self.failed:
            RECORDINGS.labels("completed").inc()
        logger.info("recording ended", extra={"recording": self.files.id, "failed": self.failed})
        if self._archive is not None:
            await self._archive.upload_async(self.transcript.meta["tenant"], self.files)


def recording_store(settings: Settings) -> RecordingStore:
    """Where this worker's recordings are (RECORDING_PATH, else CACHE_PATH/recordings)."""
    root = Path(settings.recording_path) if settings.recording_path else None
    return RecordingStore(
        root or settings.cache_path / "recordings",
        retention_s=settings.recording_retention_days * 86400,
    )


def recording_archive(settings: Settings) -> S3Archive | None:
    """The bucket recordings are kept in (RECORDING_S3_BUCKET), if any."""
    if not settings.recording_s3_bucket:
        return None
    return S3Archive(
        S3Options(
            bucket=settings.recording_s3_bucket,
            endpoint_url=settings.recording_s3_endpoint_url,
            region=settings.recording_s3_region,
            prefix=settings.recording_s3_prefix,
            access_key_id=settings.recording_s3_access_key_id,
            secret_access_key=settings.recording_s3_secret_access_key,
        )
    )


def recording_policy(settings: Settings, tenant: str) -> RecordingPolicy:
    """The tenant's rule (its TENANT_LIMITS ``recording``, else RECORDING_ALLOWED)."""
    from auth.limits import TenantPolicy

    allowed, egress = bool(settings.recording_allowed), settings.recording_mode == "egress"
    limits = TenantPolicy.parse(settings.tenant_limits).entry(tenant)
    own = False if limits is None else limits.recording
    if own is not None:
        allowed, egress = own is not False, own == "egress" or (own is True and egress)
    store = recording_store(settings)
    return RecordingPolicy(
        store,
        tenant,
        allowed=allowed,
        min_free_bytes=settings.recording_min_free_mb << 20,
        archive=recording_archive(settings) if allowed and not egress else None,
        egress=egress,
    )


class RecordingPolicy:
    """A room's recording rule: whether the tenant's policy allows recording, and where.

    A session is recorded when this allows it *and* its config asks (``"recording": true``).
    """

    def __init__(
        self,
        store: RecordingStore,
        tenant: str,
        *,
        allowed: bool,
        min_free_bytes: int = 0,
        archive: S3Archive | None = None,
        egress: bool = False,
    ) -> None:
        self.egress = egress  # LiveKit egress records the room instead (agent/recording/egress.py)
        self.store = store
        self.tenant = tenant
        self.allowed = allowed
        self.min_free_bytes = min_free_bytes
        self.archive = archive  # where finished recordings go (None: they stay on disk)

    async def start(self, session: AgentSession[Any], identity: str) -> SessionRecording | None:
        """Record ``session``; None when the destination cannot take a recording (the call
        goes on unrecorded, and that is logged and counted)."""
        try:
            self.store.sweep(self.tenant)
            files = self.store.create(self.tenant)
        except OSError as e:
            RECORDINGS.labels("failed").inc()
            logger.error("recording not started", extra={"error": str(e)})
            return None
        meta = {"id": files.id, "tenant": self.tenant, "participant": identity}
        recording = SessionRecording(
            session, files, meta, min_free_bytes=self.min_free_bytes, archive=self.archive
        )
        await recording.start()
        return recording
