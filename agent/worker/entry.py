"""The LiveKit worker: an ``AgentServer`` whose jobs run a VoiceManager in their room.

What runs where (livekit-agents runs each job in its own process):

- main process: registration with LiveKit, admission (``agent/worker/admission.py``: metadata,
  token and tenant limits are checked before a job is accepted) and :func:`worker_load`
  (what LiveKit balances on);
- inference process (``INFERENCE_MODE=shared``, the default for ``start``): the one copy of
  each model, serving every job process (agent/inference/);
- job processes: :func:`setup` connects to the inference process (or, with
  ``INFERENCE_MODE=process``, loads its own models) when the process is warmed, before any
  job, and :func:`entrypoint` runs one room with them.

Everything passed to the job processes is a module-level function or a picklable value,
because they are started by a forkserver.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType, JobProcess

from agent.conversation.idle import IDLE_REASON, IdlePolicy
from agent.log import logger
from agent.models.engines import Engines, turn_options
from agent.obs import logs
from agent.obs.traces import configure_tracing
from agent.recording.recorder import recording_policy
from agent.session.config import SessionConfig
from agent.session.control import ControlChannel
from agent.session.participant_policy import ParticipantPolicy
from agent.session.transport import CHAT_TOPIC, RoomTransport
from agent.session.voice_manager import ParticipantSession, VoiceManager
from agent.settings import Settings
from agent.tools.builtins import END_CALL_REASON
from agent.worker.admission import (
    ANONYMOUS,
    Admission,
    DispatchCredentials,
    SessionLease,
    build_limiter,
)
from agent.worker.dispatch import DispatchMetadata
from agent.worker.load import (
    LoadSignals,
    gpu_memory_fraction,
    model_budget_bytes,
    published_model_bytes,
    published_queue_delay,
)
from auth.limits import TenantPolicy

# the exit status of ``start`` when the worker gave up connecting to LiveKit: EX_TEMPFAIL,
# "try again later", so a supervisor restarting on failure brings it back
EXIT_CONNECTION_FAILED = 75
CONSOLE_IDENTITY = "console-user"


def setup(settings: Settings, proc: JobProcess) -> None:
    """Job-process warm-up, before the process takes a job: connect to the shared inference
    process when the worker runs one, else load every model here (``PRELOAD_MODELS=false``:
    on first use, for workers that serve text rooms only)."""
    logs.install_context_factory(settings.log_transcripts)
    configure_tracing(
        settings.otel_exporter_otlp_endpoint,
        settings.otel_service_name,
        allow_pii=settings.log_transcripts,
    )
    if settings.inference_mode == "shared" and settings.inference_address:
        proc.userdata["engines"] = Engines.remote(settings)
        logger.info(
            "engines served by the inference process",
            extra={"pid": proc.pid, "address": settings.inference_address},
        )
        return
    proc.userdata["engines"] = (
        Engines.load(settings) if settings.preload_models else Engines(settings)
    )
    logger.info("engines loaded", extra={"pid": proc.pid})


def worker_load(settings: Settings, server: AgentServer) -> float:
    """Load reported to LiveKit, 0..1: the most saturated of active jobs against
    ``WORKER_CAPACITY``, the inference queue delay against its budget and GPU memory
    (agent/worker/load.py).

    livekit-agents' default measures CPU, which says nothing about a GPU worker whose
    bottleneck is model throughput.
    """
    signals = LoadSignals(
        active_jobs=len(server.active_jobs),
        capacity=settings.worker_capacity,
        queue_delay_s=published_queue_delay(),
        queue_budget_s=settings.inference_queue_budget_s,
        gpu_memory_fraction=gpu_memory_fraction(),
        gpu_memory_limit=settings.gpu_memory_limit,
        model_bytes=published_model_bytes(),
        model_budget_bytes=model_budget_bytes(settings.models_memory_budget_mb),
    )
    load = signals.load()
    if load >= settings.load_threshold:
        logger.debug("worker full", extra={k: round(v, 3) for k, v in signals.parts().items()})
    return load


def tenant_defaults(settings: Settings, tenant: str) -> SessionConfig:
    """The tenant's default voice and language (TENANT_LIMITS), under what the dispatch
    metadata sets."""
    limits = TenantPolicy.parse(settings.tenant_limits).entry(tenant)
    if limits is None:
        return SessionConfig()
    language = limits.language.lower() if limits.language else None
    return SessionConfig(tts_voice=limits.voice, stt_language=language)


def _console_enabled() -> bool:
    from livekit.agents import cli

    return bool(cli.AgentsConsole.get_instance().enabled)


async def entrypoint(ctx: JobContext) -> None:
    """One job: a VoiceManager for the room, closed with the job."""
    engines: Engines = ctx.proc.userdata["engines"]
    engines.start_prewarm()
    engines.start_queue_gauge()
    settings = engines.settings
    meta = DispatchMetadata.parse(ctx.job.metadata)
    console = _console_enabled()
    # verified again here (signature; admission checked the time): never an unverified
    # claim. The console is the operator's own terminal: no dispatch, no tenant.
    tenant = (
        ANONYMOUS
        if console
        else await DispatchCredentials(settings).tenant_of(
            meta, ctx.job.room.name, check_time=False
        )
    )
    # every log record of this job (and of its sessions' tasks) carries these
    logs.bind(room=ctx.job.room.name, job_id=ctx.job.id, tenant=tenant)
    managers: list[VoiceManager] = []
    transport = RoomTransport(ctx.room)

    async def lease_lost() -> None:
        # another session holds the tenant's slot now: say so and end, do not run on
        async def tell(identity: str, text: str) -> None:
            await transport.send_text(text, topic=CHAT_TOPIC, to=[identity])

        for manager in managers:
            await manager.end_all(settings.session_end_notice, notify_text=tell)
        ctx.shutdown(reason="session lease lost")

    # hold the tenant's session slot taken at admission until this job ends
    lease = SessionLease(build_limiter(settings), tenant, ctx.job.id, on_lost=lease_lost)
    lease.start()
    ctx.add_shutdown_callback(lease.release)
    policy = ParticipantPolicy.for_tenant(settings, tenant)
    logger.info(
        "job started",
        extra={
            "job_id": ctx.job.id,
            "room": ctx.job.room.name,
            "tenant": lease.tenant,
            "instructions_from": "metadata" if meta.instructions else "settings",
            "only_participant": meta.participant,
        },
    )
    if console:
        # the console replaces the room: one session wired to the terminal by livekit-agents
        manager = VoiceManager(
            engines,
            instructions=meta.instructions or engines.settings.instructions,
            room=ctx.room,
            tenant=tenant,
            # the operator at the terminal is testing, not idling: a hang-up would leave
            # the console with no session
            idle=dataclasses.replace(IdlePolicy.from_settings(settings), after_s=0),
            tools=meta.room_tools(settings, tenant),
        )
        managers.append(manager)
        ctx.add_shutdown_callback(manager.aclose)
        await manager.attach(CONSOLE_IDENTITY)
        return
    room_config = tenant_defaults(settings, tenant).merged(
        meta.session_config(turn_options(engines.settings))
    )
    audio = room_config.audio is not False
    # a text/relay room subscribes to no audio at all
    await ctx.connect(
        auto_subscribe=AutoSubscribe.AUDIO_ONLY if audio else AutoSubscribe.SUBSCRIBE_NONE
    )
    manager = VoiceManager(
        engines,
        instructions=meta.instructions or engines.settings.instructions,
        config=room_config,
        room=ctx.room,
        only_participant=meta.participant,
        max_sessions=policy.max_sessions,
        tenant=tenant,
        greeting=policy.greeting,
        memory=engines.session_memory(tenant) if policy.memory else None,
        tools=meta.room_tools(settings, tenant),
        recording=recording_policy(settings, tenant),
    )
    managers.append(manager)

    def on_detached(entry: ParticipantSession) -> None:
        # an idle caller was hung up on, or the agent ended the call: with nobody left to
        # talk to, leave the room
        if entry.close_reason in (IDLE_REASON, END_CALL_REASON) and not manager.sessions:
            logger.info("no session left after a hang-up: leaving the room")
            ctx.shutdown(reason="callers idle")

    manager.on("session_detached", on_detached)
    control = ControlChannel(manager, transport, turn_options(settings), policy)
    ctx.add_shutdown_callback(control.aclose)
    ctx.add_shutdown_callback(manager.aclose)
    control.bind(ctx.room)
    if audio:
        manager.bind_room()


def build_server(settings: Settings) -> AgentServer:
    """The worker, configured from ``settings`` (LiveKit's CLI may still override the URL
    and keys from its own flags)."""
    server = AgentServer(
        setup_fnc=partial(setup, settings),
        load_fnc=partial(worker_load, settings),
        load_threshold=settings.load_threshold,
        num_idle_processes=settings.num_idle_processes,
        job_executor_type=(
            JobExecutorType.THREAD if settings.job_executor == "thread" else JobExecutorType.PROCESS
        ),
        host=settings.worker_http_host,
        port=settings.worker_http_port,
        drain_timeout=settings.drain_timeout_s,
        initialize_process_timeout=settings.process_init_timeout_s,
        max_retry=settings.max_connect_retries,
        # None lets LiveKit's CLI flags (--url, --api-key, --api-secret) fill them
        ws_url=settings.livekit_url or None,
        api_key=settings.livekit_api_key or None,
        api_secret=settings.livekit_api_secret or None,
    )
    admission = Admission(settings)
    server.rtc_session(entrypoint, agent_name=settings.agent_name, on_request=admission.on_request)
    return server


def connection_failed(server: AgentServer) -> bool:
    """Whether the worker stopped because it gave up connecting to LiveKit.

    livekit-agents logs "worker failed" and returns normally in that case; there is no
    public accessor yet, so this reads the flag it sets.
    """
    flag: Any = getattr(server, "_connection_failed", False)
    return bool(flag)
