"""A real LLM server process killed in the middle of a reply, then restarted."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import llm

from agent.models.engines import Engines
from agent.models.resilience import APOLOGY, ResilientLLM
from agent.session.voice_manager import VoiceManager
from agent.settings import Settings
from plugins._common.assets import resolve
from plugins.llama import SMOLLM2_135M, openai_compatible
from tests.llm_server import free_port, start_llama_server


class FirstTokenSignal(llm.LLM):
    """Passes a real LLM through and tells the test when its first token arrived."""

    def __init__(self, inner: llm.LLM) -> None:
        super().__init__()
        self.inner = inner
        self.first_token = asyncio.Event()

    def chat(self, **kwargs: Any) -> Any:
        stream = self.inner.chat(**kwargs)
        signal_ = self.first_token

        class Observed:
            async def __aenter__(self) -> Observed:
                await stream.__aenter__()
                return self

            async def __aexit__(self, *exc: Any) -> None:
                await stream.__aexit__(*exc)

            def __aiter__(self) -> Observed:
                return self

            async def __anext__(self) -> Any:
                chunk = await stream.__anext__()
                signal_.set()
                return chunk

        return Observed()


@pytest.mark.slow
async def test_killed_llm_server_mid_reply_apology_then_recovery(
    cache_dir: Path, tmp_path: Path
) -> None:
    model = resolve(SMOLLM2_135M, cache_dir)
    port = free_port()
    server = await asyncio.to_thread(start_llama_server, model, port)
    observed = FirstTokenSignal(
        openai_compatible(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=5.0)
    )
    resilient = ResilientLLM(observed, first_token_timeout_s=5.0)
    engines = Engines(Settings(cache_path=tmp_path), llm=resilient, clip_store=None)
    manager = VoiceManager(engines, instructions="You are a helpful assistant.")
    try:
        reply_task = asyncio.create_task(
            manager.reply_to_text(
                "bob", "Count from one to two hundred, writing every number as a word."
            )
        )
        await asyncio.wait_for(observed.first_token.wait(), 60)
        server.send_signal(signal.SIGKILL)  # the server dies while it is answering
        server.wait(10)
        reply = await asyncio.wait_for(reply_task, 60)
        assert reply.endswith(APOLOGY), reply[-200:]
        assert len(reply) > len(APOLOGY) + 1  # the part said before the crash stays

        # while it is down, the session still answers (with the apology) and keeps serving
        assert await manager.reply_to_text("bob", "Are you there?") == APOLOGY

        server = await asyncio.to_thread(start_llama_server, model, port)
        # the restarted server's first answer may miss the 5 s first-token deadline on a
        # loaded machine (the apology again); the session must be answering by the third
        for _ in range(3):
            recovered = await manager.reply_to_text("bob", "What is the capital of France?")
            if recovered and APOLOGY not in recovered:
                break
        assert recovered and APOLOGY not in recovered
    finally:
        await manager.aclose()
        if server.poll() is None:
            server.terminate()
            server.wait(10)
