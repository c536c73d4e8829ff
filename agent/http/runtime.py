"""Builds the HTTP API's parts from Settings and runs it: on its own (``serve``) or beside
the LiveKit worker (``start``, in a thread with its own event loop, so that LiveKit's CLI
keeps its loop and signal handling to itself)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from agent.conversation.memory import memory_store
from agent.http.api import ApiContext, build_app
from agent.http.speaker import Speaker
from agent.log import logger
from agent.models.engines import Engines
from agent.obs.metrics import ClipCacheCollector, optional_gpu_collector
from agent.recording.recorder import recording_archive, recording_store
from agent.settings import Settings
from agent.worker.admission import build_limiter, dispatch_grants, token_config
from auth.errors import Unavailable
from auth.tokens import TokenVerifier


def speech_engines(settings: Settings) -> Engines:
    """The engines ``/v1/speak`` synthesizes with: the shared inference process's when the
    worker runs one (``start``: the main process loads no model), else this process's,
    loaded on first use (``serve``)."""
    if settings.inference_address:
        return Engines.remote(settings)
    return Engines(settings)


def livekit_dispatcher(settings: Settings) -> Callable[[str, str], Any] | None:
    if not (settings.livekit_url and settings.livekit_api_key and settings.livekit_api_secret):
        return None

    async def dispatch(room: str, metadata: str) -> str:
        from livekit import api

        try:
            async with api.LiveKitAPI(
                settings.livekit_url, settings.livekit_api_key, settings.livekit_api_secret
            ) as lk:
                created = await lk.agent_dispatch.create_dispatch(
                    api.CreateAgentDispatchRequest(
                        agent_name=settings.agent_name, room=room, metadata=metadata
                    )
                )
        except Exception as e:
            logger.warning("dispatch failed", extra={"room": room, "error": type(e).__name__})
            raise Unavailable(f"LiveKit did not accept the dispatch ({type(e).__name__})") from e
        return str(created.id)

    return dispatch


def build_context(
    settings: Settings, readiness: Callable[[], dict[str, Any]] | None = None
) -> ApiContext:
    engines = speech_engines(settings)
    store = engines.clip_store
    collectors: list[Any] = [ClipCacheCollector(store)] if store is not None else []
    return ApiContext(
        settings=settings,
        collectors=collectors + optional_gpu_collector(),
        verifier=TokenVerifier(token_config(settings)),
        limiter=build_limiter(settings),
        speaker=Speaker(engines, max_audio_s=settings.speak_max_audio_s),
        dispatcher=livekit_dispatcher(settings),
        grants=dispatch_grants(settings),
        memory=memory_store(
            settings.memory_redis_url or settings.rate_limit_redis_url,
            settings.cache_path,
            settings.memory_ttl_s,
        ),
        recordings=recording_store(settings),
        archive=recording_archive(settings),
        readiness=readiness or (lambda: {"models": True, "livekit": "not used"}),
    )


async def run_http(settings: Settings, ctx: ApiContext, stop: asyncio.Event) -> None:
    runner = web.AppRunner(build_app(ctx), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else settings.http_port
    logger.info("HTTP API listening", extra={"host": settings.http_host, "port": port})
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await ctx.limiter.backend.aclose()
        if ctx.memory is not None:
            await ctx.memory.aclose()


class VoiceWarmup:
    """``serve``'s readiness: the voice ``/v1/speak`` needs, loaded in the background at
    start (``loading``, then ``loaded`` or ``failed``), so /readyz says whether this process
    can serve instead of always yes."""

    def __init__(self) -> None:
        self.state = "loading"

    async def run(self, ctx: ApiContext) -> None:
        if ctx.speaker is None:
            self.state = "not used"
            return
        speaker = ctx.speaker
        try:
            await asyncio.to_thread(lambda: speaker.sample_rate)  # loads the voice
        except Exception as e:
            self.state = "failed"
            logger.error("the voice did not load", extra={"error": str(e)})
        else:
            self.state = "loaded"

    def readiness(self) -> dict[str, Any]:
        return {"models": self.state, "livekit": "not used"}


def serve(settings: Settings) -> int:
    """``python -m agent serve``: the HTTP API alone, until SIGTERM/SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        warmup = VoiceWarmup()
        ctx = build_context(settings, warmup.readiness)
        warming = asyncio.create_task(warmup.run(ctx))
        try:
            await run_http(settings, ctx, stop)
        finally:
            warming.cancel()

    asyncio.run(main())
    return 0


class HttpThread:
    """The HTTP API beside LiveKit's worker, in its own thread and event loop."""

    def __init__(self, settings: Settings, readiness: Callable[[], dict[str, Any]]) -> None:
        self._settings = settings
        self._readiness = readiness
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="http-api", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._stop = asyncio.Event()
        ctx = build_context(self._settings, self._readiness)
        try:
            self._loop.run_until_complete(run_http(self._settings, ctx, self._stop))
        except Exception:
            logger.exception("HTTP API stopped")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
