"""The VoiceManager: one voice pipeline per speaking participant of a room.

The entrypoint creates one VoiceManager per job (room). For each participant who publishes
a microphone track it attaches an ``AgentSession`` built from the process's engines and
bound to that participant (RoomIO with ``participant_identity``, the noise filter in RoomIO's
hook, the agent's reply on its own track ``agent-<identity>``); when the participant leaves,
the session is closed and forgotten. Sessions are independent: a session that fails to start
or dies is logged and dropped, and the others go on.

The same object runs without a room: :meth:`VoiceManager.attach` takes a :class:`SessionIO`
(any ``io.AudioInput``/``io.AudioOutput``), which is how ``simulate``, the tests and the load
harness drive the very code path a room uses.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents import NOT_GIVEN, Agent, AgentSession, llm, utils
from livekit.agents.voice import room_io
from livekit.agents.voice.events import CloseEvent
from livekit.agents.voice.io import AudioInput, AudioOutput
from livekit.agents.voice.transcription import TranscriptSynchronizer

from agent.conversation.idle import IDLE_REASON, IdlePolicy, IdleWatch
from agent.conversation.recall import SessionMemory
from agent.log import logger
from agent.models.engines import Engines
from agent.models.voices import UnknownVoice
from agent.obs import logs
from agent.obs.metrics import ACTIVE_SESSIONS, SESSIONS_ENDED, SESSIONS_STARTED, SessionMetrics
from agent.obs.traces import SessionQueueWaits, TurnTracer
from agent.recording.egress import RoomEgress
from agent.recording.recorder import RecordingPolicy, SessionRecording
from agent.session import factory
from agent.session.audio_input import NormalizedAudioInput
from agent.session.config import ConfigError, SessionConfig
from agent.session.participant_room import (
    AgentStates,
    ParticipantTranscript,
    ReplyTrackPermissions,
    UserTranscripts,
    reply_track_name,
    unpublish_reply_track,
)
from agent.session.swappable import SwappableTTS, SwitchableNoiseFilter
from agent.session.voice_agent import VoiceAgent
from agent.tools.box import RoomTools, SessionTools
from agent.tools.builtins import END_CALL_REASON
from plugins._common.executor import set_queue_wait_sink
from plugins._common.pause_text import PauseText
from plugins.whisper.models import UnsupportedLanguage
from plugins.whisper.session import SessionSTT


def with_language(instructions: str, language: str | None) -> str:
    """The persona, told which language to answer in when the session names one (the
    voice speaks it when it can: docs/voices-and-languages.md)."""
    if language is None or language == "en":
        return instructions
    if language == "auto":
        return f"{instructions}\nAlways reply in the language the user speaks."
    return f"{instructions}\nAlways reply in the language with ISO 639-1 code {language!r}."


class SessionRefused(Exception):
    """A session the room's policy does not allow; ``code`` and ``message`` are safe to
    send to the participant."""

    code = "session_refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAttendedError(SessionRefused):
    code = "not_attended"


class TooManySessionsError(SessionRefused):
    code = "too_many_sessions"


@dataclass
class SessionIO:
    """Room-less transport for one session: where its audio comes from and goes to."""

    audio_input: AudioInput
    audio_output: AudioOutput


@dataclass
class ParticipantSession:
    """A participant's voice pipeline and what the manager must release with it."""

    identity: str
    session: AgentSession[Any]
    noise_filter: SwitchableNoiseFilter | None
    config: SessionConfig
    agent: Agent
    io: SessionIO | None = None
    started_at: float = field(default_factory=time.time)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_reason: str | None = None
    idle: IdleWatch | None = None
    tools: SessionTools | None = None  # its MCP connections close with it
    recording: SessionRecording | None = None

    @property
    def mode(self) -> str:
        return "text" if self.config.audio is False else "audio"


class VoiceManager(utils.EventEmitter[str]):
    """Attaches and detaches per-participant voice sessions for one room (or none).

    Events: ``session_attached`` (ParticipantSession), ``session_detached``
    (ParticipantSession, after it closed; ``close_reason`` says why).
    """

    def __init__(
        self,
        engines: Engines,
        *,
        instructions: str,
        config: SessionConfig | None = None,
        room: rtc.Room | None = None,
        only_participant: str | None = None,
        agent_factory: Callable[[str, llm.ChatContext | None], Agent] | None = None,
        max_sessions: int | None = None,
        tenant: str | None = None,
        greeting: str | None = None,
        idle: IdlePolicy | None = None,
        memory: SessionMemory | None = None,
        sessions: factory.SessionBuilder = factory.voice_session,
        tools: RoomTools | None = None,
        recording: RecordingPolicy | None = None,
    ) -> None:
        super().__init__()
        # what builds a voice session on the engines (tests give fakes on a fast clock)
        self._build_session = sessions
        self._memory = memory  # None: this tenant's conversations are not remembered
        # said when a voice session starts, unless its config has its own (the tenant's,
        # else GREETING)
        self._greeting = greeting if greeting is not None else engines.settings.greeting
        self._idle = idle or IdlePolicy.from_settings(engines.settings)
        self._engines = engines
        self._instructions = instructions
        self._config = config or SessionConfig()
        self._room = room
        self._only = only_participant
        self._max_sessions = max_sessions
        # the clip-cache namespace of this room's replies: one tenant's cache hits never
        # tell another what the agent said
        self._tenant = tenant
        backchannels = factory.backchannels(engines)
        self._agent_factory = agent_factory or (
            lambda instructions, chat_ctx: VoiceAgent(
                instructions=instructions,
                chat_ctx=chat_ctx,
                backchannels=backchannels,
                budget=engines.context_budget(),
            )
        )
        # None: nothing in this room is recorded, whatever a config asks
        self._recording = recording if recording is not None and recording.allowed else None
        self._egress: RoomEgress | None = None
        self._tools = tools if tools is not None and not tools.empty else None
        if self._tools is not None and not engines.llm_calls_tools:
            if self._tools.declared:  # the built-in end_call alone is no configuration
                logger.warning(
                    "tools are configured but the embedded LLM cannot call them: set "
                    "LLM_BASE_URL to a model served with tool calling (docs/tools.md)"
                )
            self._tools = None
        self._sessions: dict[str, ParticipantSession] = {}
        self._pending: dict[str, asyncio.Task[ParticipantSession | None]] = {}
        self._releasing: set[asyncio.Task[None]] = set()  # voice chains being closed
        self._pending_detach: set[asyncio.Task[None]] = set()
        self._closing = False
        self._states = AgentStates(room, lambda: len(self._sessions)) if room is not None else None
        self._permissions: ReplyTrackPermissions | None = None

    @property
    def engines(self) -> Engines:
        """The models this manager's sessions run on."""
        return self._engines

    @property
    def room_config(self) -> SessionConfig:
        """The config every session of the room starts from (dispatch metadata)."""
        return self._config

    def attends(self, identity: str) -> bool:
        """Whether ``identity`` may have a session (the dispatch's ``participant``)."""
        return self._only is None or identity == self._only

    @property
    def sessions(self) -> dict[str, ParticipantSession]:
        """Attached sessions by participant identity (a copy)."""
        return dict(self._sessions)

    # --- room binding ----------------------------------------------------------------------

    def bind_room(self) -> None:
        """Follow the room: attach to every remote participant with a microphone track,
        now and later, and detach those who leave. Call after ``ctx.connect()``."""
        room = self._room
        if room is None:
            raise RuntimeError("bind_room() needs a VoiceManager created with a room")
        self._room_outputs()
        room.on("track_published", self._on_track_published)
        room.on("participant_disconnected", self._on_participant_disconnected)
        for participant in room.remote_participants.values():
            if any(
                pub.kind == rtc.TrackKind.KIND_AUDIO
                for pub in participant.track_publications.values()
            ):
                self._attach_soon(participant.identity)

    def _on_track_published(
        self, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if publication.kind == rtc.TrackKind.KIND_AUDIO:
            self._attach_soon(participant.identity)

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        task = asyncio.create_task(self.detach(participant.identity, reason="participant left"))
        self._pending_detach.add(task)
        task.add_done_callback(self._pending_detach.discard)

    def _attach_soon(self, identity: str) -> None:
        if identity in self._sessions or identity in self._pending or self._closing:
            return
        if self._only is not None and identity != self._only:
            return
        task = asyncio.create_task(self._attach_logged(identity))
        self._pending[identity] = task
        task.add_done_callback(lambda _: self._pending.pop(identity, None))

    async def _attach_logged(self, identity: str) -> ParticipantSession | None:
        try:
            return await self.attach(identity)
        except SessionRefused as e:  # the room's policy, not a failure
            logger.info("session refused", extra={"participant": identity, "code": e.code})
            return None
        except Exception:
            # one participant's broken pipeline must not take the room down
            logger.exception("could not attach a voice session", extra={"participant": identity})
            return None

    # --- sessions --------------------------------------------------------------------------

    async def attach(
        self,
        identity: str,
        io: SessionIO | None = None,
        config: SessionConfig | None = None,
        *,
        history: llm.ChatContext | None = None,
    ) -> ParticipantSession:
        """Start a session for ``identity``; with ``io`` it runs without a room.

        ``config`` overrides the room's config (from dispatch metadata) for this session;
        ``audio: false`` makes it a text session that creates no audio engine at all.
        ``history`` continues an earlier conversation (a switch between modes).

        Raises what the session's construction raised (e.g. a noise filter that fails to
        load); nothing is left attached in that case.
        """
        if self._closing:
            raise RuntimeError("the VoiceManager is closed")
        if identity in self._sessions:
            raise ValueError(f"participant {identity!r} already has a session")
        if not self.attends(identity):
            raise NotAttendedError("the agent attends another participant in this room")
        if self._max_sessions is not None and len(self._sessions) >= self._max_sessions:
            raise TooManySessionsError("this room has as many sessions as it may have")
        config = self._config.merged(config) if config is not None else self._config
        if history is None and self._memory is not None:
            history = await self._memory.recall(identity)
        audio = config.audio is not False
        noise_filter = factory.noise_filter(self._engines, config.noise_filter) if audio else None
        session = (
            self._build_session(
                self._engines,
                config,
                namespace=self._tenant,
                user_away_timeout=self._idle.after_s if self._idle.enabled else None,
            )
            if audio
            else factory.text_session(self._engines)
        )
        agent = self._agent_factory(
            with_language(config.instructions or self._instructions, config.stt_language), history
        )
        session_tools = await self._open_tools(identity, agent)
        entry = ParticipantSession(
            identity=identity,
            session=session,
            noise_filter=noise_filter,
            config=config,
            agent=agent,
            io=io,
            tools=session_tools,
        )
        self._sessions[identity] = entry
        session.on("close", lambda ev: self._on_session_close(entry, ev))
        SessionMetrics().watch(session)
        queue_waits = self._trace_turns(identity, session) if audio else None
        if not audio:
            start = session.start(agent)  # no room I/O: text is routed by the manager
        elif io is not None:
            assert noise_filter is not None
            session.input.audio = NormalizedAudioInput(io.audio_input, noise_filter)
            session.output.audio = io.audio_output
            start = session.start(agent)
        else:
            addressed = self._room_outputs()
            room_options = self._room_options(identity, noise_filter)
            # no session host: livekit-agents would let any participant of the room observe
            # and drive the room's first session over ``lk.agent.session`` streams
            # (the console's session is reached through its host: left to livekit-agents)
            start = session.start(
                agent,
                room=self._room if self._room is not None else NOT_GIVEN,
                room_options=room_options,
                session_host=False if addressed else NOT_GIVEN,
            )
        # the session's tasks are created in this context and keep it: every record they
        # log carries the participant (room, tenant and job id come from the entrypoint)
        context = contextvars.copy_context()
        context.run(logs.bind, participant=identity)
        if queue_waits is not None:  # the inference queue waits of this session's calls
            context.run(set_queue_wait_sink, queue_waits.record)
        try:
            await asyncio.create_task(start, context=context)
            if audio and io is None and addressed:
                self._address_to_participant(entry)
        except BaseException:
            self._sessions.pop(identity, None)
            if noise_filter is not None:
                noise_filter.close()
            await session.aclose()
            if session_tools is not None:
                await session_tools.aclose()
            raise
        self._set_audio_subscription(identity, audio)
        if audio and config.recording:
            await self._record(entry)
        if audio:
            self._converse(entry)
        logger.info("session attached", extra={"participant": identity, "audio": audio})
        SESSIONS_STARTED.inc()
        ACTIVE_SESSIONS.inc()
        self.emit("session_attached", entry)
        return entry

    async def _open_tools(self, identity: str, agent: Agent) -> SessionTools | None:
        """The session's tools on its agent (MCP servers connected now); ``end_call``
        detaches this participant."""
        if self._tools is None:
            return None

        async def end_call() -> None:
            await self.detach(identity, reason=END_CALL_REASON)

        opened = await self._tools.open_session(end_call)
        await agent.update_tools([*agent.tools, *opened.tools])
        return opened

    def _trace_turns(self, identity: str, session: AgentSession[Any]) -> SessionQueueWaits:
        """A ``voice.turn`` span per exchange (written only when tracing is configured);
        returns the sink for the session's inference queue waits."""

        def lookups() -> list[Any]:
            cache = factory.clip_cache_of(session.tts)
            return list(cache.lookups) if cache is not None else []

        room = self._room.name if self._room is not None else ""
        attributes = {"tenant": self._tenant or "", "room": room, "participant": identity}
        waits = SessionQueueWaits()
        TurnTracer(attributes, lookups=lookups, waits=waits).watch(session)
        return waits

    async def _record(self, entry: ParticipantSession) -> None:
        """Start recording a voice session whose config asks for it, if the policy allows."""
        if self._recording is None:
            logger.info("recording asked for but not allowed by the tenant's policy")
            return
        if self._recording.egress:  # one egress records the whole room, asked for once
            if self._room is None or not self._room.name:
                logger.warning("recording by egress needs a LiveKit room: not recorded")
                return
            if self._egress is None:
                self._egress = RoomEgress(
                    self._engines.settings, self._room.name, self._recording.tenant
                )
            await self._egress.start()
            return
        if entry.recording is None:
            entry.recording = await self._recording.start(entry.session, entry.identity)

    async def _stop_recording(self, entry: ParticipantSession) -> None:
        recording, entry.recording = entry.recording, None
        if recording is not None:
            await recording.aclose()

    def _converse(self, entry: ParticipantSession) -> None:
        """A voice session's own initiative: the greeting, and the idle-caller watch."""
        greeting = entry.config.greeting or self._greeting
        if greeting:
            entry.session.say(greeting)  # interruptible; the clip cache serves repeats
        if self._idle.enabled:
            identity = entry.identity

            async def end() -> None:
                await self.detach(identity, reason=IDLE_REASON)

            entry.idle = IdleWatch(entry.session, self._idle, end)

    def _room_outputs(self) -> bool:
        """Whether sessions go to a connected room (the console's room is not one); the
        first time, before any reply track exists, restrict each reply track to its own
        participant's ears."""
        if self._room is None or not self._room.isconnected():
            return False
        if self._permissions is None:
            self._permissions = ReplyTrackPermissions(self._room)
        return True

    def _address_to_participant(self, entry: ParticipantSession) -> None:
        """Replace what RoomIO sends to the whole room (transcripts, the agent's state) by
        the same sent to this session's participant only (agent/session/participant_room.py)."""
        assert self._room is not None and self._states is not None
        session, identity = entry.session, entry.identity
        try:
            room_io = session.room_io
        except RuntimeError:  # the console: its terminal is the only participant
            return
        # RoomIO has no switch for publishing the agent's state to the whole room: its own
        # handler is the only way to stop it (checked against livekit-agents 1.8)
        session.off("agent_state_changed", room_io._on_agent_state_changed)  # noqa: SLF001
        session.on("agent_state_changed", self._states.listener(identity))
        session.on("user_input_transcribed", UserTranscripts(self._room, identity).on_transcribed)
        # the transcript follows the audio as it is played out, as RoomIO's would
        audio_out = session.output.audio
        assert audio_out is not None, "RoomIO gives every voice session an audio output"
        synchronizer = TranscriptSynchronizer(
            next_in_chain_audio=audio_out,
            next_in_chain_text=ParticipantTranscript(self._room, identity),
        )
        session.output.audio = synchronizer.audio_output
        session.output.transcription = synchronizer.text_output
        self._states.set(identity, session.agent_state)

    def _set_audio_subscription(self, identity: str, subscribed: bool) -> None:
        """A text session does not even receive the participant's audio."""
        if self._room is None:
            return
        participant = self._room.remote_participants.get(identity)
        if participant is None:
            return
        for pub in participant.track_publications.values():
            if pub.kind == rtc.TrackKind.KIND_AUDIO:
                pub.set_subscribed(subscribed)

    def check_config(self, update: SessionConfig) -> None:
        """Raise ``ConfigError`` for what this worker cannot do: a voice it does not have,
        a language its STT model does not hear. Nothing is applied before this passes."""
        if update.tts_voice is not None:
            try:
                self._engines.check_voice(update.tts_voice)
            except UnknownVoice as e:
                raise ConfigError("unknown_voice", str(e), "tts.voice") from None
        if update.stt_language is not None:
            try:
                self._engines.check_language(update.stt_language)
            except UnsupportedLanguage as e:
                raise ConfigError("unsupported_language", str(e), "stt.language") from None

    async def configure(self, identity: str, update: SessionConfig) -> SessionConfig:
        """Apply a parsed config message to ``identity``'s session while it runs.

        Switching ``audio`` replaces the session with one of the other kind and carries the
        conversation over; everything else is changed in place. Returns the session's
        config after the change. Raises ``KeyError`` for an unknown participant.
        """
        entry = self._sessions[identity]
        new = entry.config.merged(update)
        if (new.audio is not False) != (entry.config.audio is not False):
            # the agent's context is what the LLM sees (system prompt and every turn)
            history = entry.agent.chat_ctx.copy()
            await self.detach(identity, reason="mode switch")
            # an explicit "audio" in the new config decides; the room's default does not
            await self.attach(identity, entry.io, new, history=history)
            return new
        session = entry.session
        if update.noise_filter is not None and entry.noise_filter is not None:
            entry.noise_filter.switch(update.noise_filter)
        if update.instructions is not None or update.stt_language is not None:
            await entry.agent.update_instructions(
                with_language(new.instructions or self._instructions, new.stt_language)
            )
        if update.stt_language is not None and isinstance(session.stt, SessionSTT):
            session.stt.set_language(update.stt_language)
        voice_changed = update.tts_speed is not None or update.tts_voice is not None
        if voice_changed and isinstance(session.tts, SwappableTTS):
            # the next sentence speaks with the new voice; one already playing finishes
            session.tts.swap(factory.session_voice(self._engines, new, self._tenant))
        if update.turn is not None and entry.mode == "audio":
            session.update_options(
                endpointing_opts=update.turn.endpointing(),
                # the same pause text: the session's STT streams keep publishing to it
                turn_detection=factory.turn_detector(
                    self._engines,
                    update.turn,
                    getattr(session.stt, "pause_text", None) or PauseText(),
                ),
            )
            vad = session.vad
            if vad is not None and hasattr(vad, "update_options"):
                vad.update_options(**update.turn.vad_options())
        if update.recording is True and entry.mode == "audio":
            await self._record(entry)
        elif update.recording is False:
            await self._stop_recording(entry)
        entry.config = new
        logger.info("session reconfigured", extra={"participant": identity})
        return new

    async def reply_to_text(self, identity: str, text: str) -> str:
        """Typed input from ``identity``: the agent's reply text (also spoken in a voice
        session). A participant without a session gets a text session first."""
        entry = self._sessions.get(identity)
        if entry is None:
            entry = await self.attach(identity, config=SessionConfig(audio=False))
        handle = entry.session.generate_reply(user_input=text)
        await handle
        replies = [
            reply
            for item in handle.chat_items
            if item.type == "message" and item.role == "assistant" and (reply := item.text_content)
        ]
        return " ".join(replies)

    def _room_options(
        self, identity: str, noise_filter: SwitchableNoiseFilter | None
    ) -> room_io.RoomOptions:
        return room_io.RoomOptions(
            participant_identity=identity,
            audio_input=room_io.AudioInputOptions(
                noise_cancellation=noise_filter if noise_filter is not None else None
            ),
            audio_output=room_io.AudioOutputOptions(track_name=reply_track_name(identity)),
            # typed chat is routed per room, not per session (several sessions share a room)
            text_input=False,
            # RoomIO would stream transcripts to the whole room; each session sends its own
            # to its participant (_address_to_participant)
            text_output=False,
            close_on_disconnect=True,
        )

    def _on_session_close(self, entry: ParticipantSession, ev: CloseEvent) -> None:
        if self._sessions.get(entry.identity) is entry:
            del self._sessions[entry.identity]
        if entry.idle is not None:
            entry.idle.close()
        if self._memory is not None:
            window = getattr(entry.agent, "context_window", None)
            task = asyncio.create_task(
                # the agent's context: it began with what was recalled, so memory rolls on
                self._memory.keep_session(
                    entry.identity, entry.agent.chat_ctx, window.summary if window else ""
                )
            )
            self._releasing.add(task)  # aclose waits for it
            task.add_done_callback(self._releasing.discard)
        if entry.noise_filter is not None:
            entry.noise_filter.close()
        if entry.recording is not None:
            task = asyncio.create_task(self._stop_recording(entry))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
        if entry.tools is not None:
            task = asyncio.create_task(entry.tools.aclose())
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
        if isinstance(entry.session.tts, SwappableTTS):
            # the session does not close the TTS it was given; its voice chain is its own
            task = asyncio.create_task(entry.session.tts.aclose())
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
        entry.close_reason = entry.close_reason or str(ev.reason)
        if self._states is not None and entry.mode == "audio" and entry.io is None:
            self._states.set(entry.identity, "")
        if self._permissions is not None and self._room is not None and entry.io is None:
            task = asyncio.create_task(unpublish_reply_track(self._room, entry.identity))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
        if ev.error is not None:
            logger.error(
                "voice session closed by an error",
                extra={"participant": entry.identity, "error": str(ev.error)},
            )
        else:
            logger.info(
                "voice session detached",
                extra={"participant": entry.identity, "reason": entry.close_reason},
            )
        entry.closed.set()
        SESSIONS_ENDED.labels(getattr(ev.reason, "value", str(ev.reason))).inc()
        ACTIVE_SESSIONS.dec()
        self.emit("session_detached", entry)

    async def end_all(
        self,
        notice: str,
        *,
        notify_text: Callable[[str, str], Any] | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        """End every session politely: a voice session says ``notice`` (not interruptible)
        before it closes, a text session gets it through ``notify_text(identity, text)``."""
        self._closing = True

        async def end(identity: str, entry: ParticipantSession) -> None:
            try:
                if entry.mode == "audio":
                    handle = entry.session.say(notice, allow_interruptions=False)
                    await asyncio.wait_for(handle.wait_for_playout(), timeout_s)
                elif notify_text is not None:
                    await notify_text(identity, notice)
            except Exception:  # the notice is a courtesy; the session ends regardless
                logger.warning("end-of-call notice not delivered", extra={"participant": identity})
            await self.detach(identity, reason="ended by the worker")

        await asyncio.gather(*(end(i, e) for i, e in list(self._sessions.items())))

    async def detach(self, identity: str, *, reason: str = "detached") -> None:
        """Close ``identity``'s session if it has one (idempotent)."""
        pending = self._pending.get(identity)
        if pending is not None:
            await asyncio.wait({pending})
        entry = self._sessions.get(identity)
        if entry is None:
            return
        entry.close_reason = reason
        await entry.session.aclose()
        await entry.closed.wait()

    async def aclose(self) -> None:
        """Close every session; the room binding stops attaching new ones."""
        self._closing = True
        if self._room is not None:
            self._room.off("track_published", self._on_track_published)
            self._room.off("participant_disconnected", self._on_participant_disconnected)
        if self._pending:
            await asyncio.wait(set(self._pending.values()))
        await asyncio.gather(
            *(self.detach(i, reason="shutdown") for i in list(self._sessions)),
            return_exceptions=True,
        )
        if self._releasing:
            await asyncio.wait(set(self._releasing))
        if self._egress is not None:
            await self._egress.stop()
        if self._permissions is not None:
            self._permissions.close()
        if self._states is not None:
            await self._states.aclose()
