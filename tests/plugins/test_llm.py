from __future__ import annotations

import pytest
from livekit.agents import llm

from plugins._common.assets import resolve


def _ctx(question: str) -> llm.ChatContext:
    ctx = llm.ChatContext()
    ctx.add_message(
        role="system", content="You are a helpful voice assistant. Answer in one short sentence."
    )
    ctx.add_message(role="user", content=question)
    return ctx


async def _collect(stream) -> list[str]:
    parts = []
    async with stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                parts.append(chunk.delta.content)
    return parts


async def test_embedded_llama_streams_a_reply(llama_instance) -> None:
    from plugins.llama import LlamaLLM

    model = LlamaLLM(model_instance=llama_instance, max_tokens=40)
    parts = await _collect(model.chat(chat_ctx=_ctx("What is the capital of France?")))
    assert len(parts) > 1  # streamed token by token, not one block
    assert "".join(parts).strip()


@pytest.fixture
def llama_server(cache_dir):
    """A real OpenAI-compatible server (llama.cpp's) on loopback, serving the packaged GGUF."""
    from plugins.llama import SMOLLM2_135M
    from tests.llm_server import free_port, start_llama_server

    port = free_port()
    proc = start_llama_server(resolve(SMOLLM2_135M, cache_dir), port, alias="smollm2")
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(timeout=10)


async def test_openai_compatible_server_streams_a_reply(llama_server) -> None:
    from plugins.llama import openai_compatible

    model = openai_compatible(base_url=llama_server, model="smollm2")
    parts = await _collect(model.chat(chat_ctx=_ctx("Name a color.")))
    assert len(parts) > 1
    assert "".join(parts).strip()
    await model.aclose()


def test_llama_needs_a_model(tmp_path) -> None:
    from plugins._common.errors import AssetMissingError
    from plugins.llama import LlamaLLM

    with pytest.raises(AssetMissingError):
        LlamaLLM(cache_dir=tmp_path)
