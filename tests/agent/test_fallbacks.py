"""Fallbacks: the LLM apology and circuit breaker, and espeak-ng behind the voice."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from livekit.agents import APIConnectionError

from agent.models.engines import Engines
from agent.models.resilience import APOLOGY, CircuitBreaker, ResilientLLM
from agent.obs.metrics import FALLBACKS
from agent.session.voice_manager import VoiceManager
from agent.settings import Settings
from plugins.llama import openai_compatible


def test_circuit_breaker_states() -> None:
    now = [0.0]
    b = CircuitBreaker(failures=2, reset_after_s=10, clock=lambda: now[0])
    assert b.allow() and b.state == "closed"
    b.record_failure()
    assert b.allow()  # one failure is not a pattern
    b.record_failure()
    assert b.state == "open" and not b.allow()
    now[0] = 10.0
    assert b.state == "half-open"
    assert b.allow() and not b.allow()  # exactly one trial at a time
    b.record_failure()
    assert b.state == "open"  # the trial failed: open again, for another period
    now[0] = 20.0
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.allow()


class FlakyOpenAI:
    """An OpenAI-compatible chat endpoint on loopback that fails until told otherwise."""

    def __init__(self) -> None:
        self.healthy = False
        self.requests = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def completions(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await request.read()
        if not self.healthy:
            return web.json_response({"error": {"message": "overloaded"}}, status=500)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for word in ["Paris ", "is ", "the ", "capital."]:
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
            }
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.completions)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1"


@pytest.fixture
async def flaky() -> AsyncIterator[FlakyOpenAI]:
    server = FlakyOpenAI()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


def text_manager(tmp_path: Path, llm: ResilientLLM) -> VoiceManager:
    engines = Engines(Settings(cache_path=tmp_path), llm=llm, clip_store=None)
    return VoiceManager(engines, instructions="Answer briefly.")


async def test_llm_errors_become_an_apology_and_the_breaker_spares_the_endpoint(
    tmp_path: Path, flaky: FlakyOpenAI
) -> None:
    now = [0.0]
    llm = ResilientLLM(
        openai_compatible(base_url=flaky.url, model="m", timeout_s=5.0),
        first_token_timeout_s=5.0,
        breaker=CircuitBreaker(failures=3, reset_after_s=30, clock=lambda: now[0]),
    )
    manager = text_manager(tmp_path, llm)
    before = FALLBACKS.labels("llm", "circuit_open")._value.get()
    try:
        for _ in range(3):
            assert await manager.reply_to_text("bob", "What is the capital of France?") == APOLOGY
        # each failing turn: one request and one quick retry
        assert flaky.requests == 2 * 3 and llm.breaker.state == "open"
        # open: the endpoint is not called at all, the session still answers
        assert await manager.reply_to_text("bob", "Are you there?") == APOLOGY
        assert flaky.requests == 2 * 3
        assert FALLBACKS.labels("llm", "circuit_open")._value.get() == before + 1
        # after the back-off one trial goes through; the endpoint has recovered
        flaky.healthy = True
        now[0] = 31.0
        reply = await manager.reply_to_text("bob", "What is the capital of France?")
        assert reply == "Paris is the capital."
        assert flaky.requests == 2 * 3 + 1 and llm.breaker.state == "closed"
    finally:
        await manager.aclose()


async def test_a_dead_llm_server_gets_an_apology_quickly(tmp_path: Path) -> None:
    llm = ResilientLLM(
        openai_compatible(base_url="http://127.0.0.1:9/v1", model="m", timeout_s=2.0),
        first_token_timeout_s=2.0,
    )
    manager = text_manager(tmp_path, llm)
    try:
        assert await manager.reply_to_text("bob", "Hello?") == APOLOGY
        assert await manager.reply_to_text("bob", "Hello again?") == APOLOGY  # still serving
    finally:
        await manager.aclose()


async def test_a_failing_voice_falls_back_to_espeak(cache_dir: Path, piper_tts) -> None:
    from plugins.piper import PiperTTS

    class BrokenPiper(PiperTTS):
        def synthesize_pcm(self, text: str, opts: object = None) -> bytes:
            raise APIConnectionError("voice model crashed")

    broken = BrokenPiper(voice_instance=piper_tts._voice, use_cuda=False)
    engines = Engines(Settings(cache_path=cache_dir), piper=broken, clip_store=None)
    before = FALLBACKS.labels("tts", "engine_failed")._value.get()
    voice = engines.voice(None)
    async with voice.synthesize("The shop opens at nine.") as stream:
        pcm = np.concatenate([np.frombuffer(ev.frame.data, np.int16) async for ev in stream])
    assert pcm.size > 0.5 * voice.sample_rate and np.abs(pcm).max() > 1000  # espeak spoke
    assert FALLBACKS.labels("tts", "engine_failed")._value.get() == before + 1
