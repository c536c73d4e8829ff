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

    model = LlamaLLM(model_instance=llama_instance, max_tokens=40, seed=42)
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


@pytest.mark.slow  # starts server processes
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


def test_llama_threads_are_bounded_for_prompts_too(llama_instance, monkeypatch) -> None:
    """llama.cpp's own default evaluates prompts on every core; with a model in every job
    process that made sessions stall each other on a 16-core host (docs/benchmarks.md)."""
    from plugins.llama import llm as llama_llm

    params = llama_instance.context_params
    assert params.n_threads_batch == params.n_threads == llama_llm.default_threads()
    monkeypatch.setattr(llama_llm.os, "cpu_count", lambda: 16)
    assert llama_llm.default_threads() == llama_llm.MAX_DEFAULT_THREADS
    monkeypatch.setattr(llama_llm.os, "cpu_count", lambda: 2)
    assert llama_llm.default_threads() == 1


def test_text_turn_scorer_uses_one_thread_for_prompts(cache_dir) -> None:
    from plugins.llama import SMOLLM2_135M
    from plugins.smart_turn.text import TextTurnScorer

    scorer = TextTurnScorer(resolve(SMOLLM2_135M, cache_dir))
    try:
        assert 0.0 <= scorer.verdict_now("Where is the station?").p_complete <= 1.0
        params = scorer._llama.context_params
        assert (params.n_threads, params.n_threads_batch) == (1, 1)
    finally:
        scorer.close()


def test_llm_threads_setting_is_bounded() -> None:
    from agent.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="LLM_THREADS"):
        Settings(llm_threads=-1).validate()
    Settings(llm_threads=2).validate()


def test_serving_engine_urls_must_be_http() -> None:
    from agent.settings import Settings, SettingsError

    for key in ("stt_base_url", "tts_base_url", "llm_base_url"):
        extra = {"llm_model": "m"} if key == "llm_base_url" else {}
        with pytest.raises(SettingsError, match=key.upper()):
            Settings(**{key: "file:///etc/passwd"}, **extra).validate()
        Settings(**{key: "http://127.0.0.1:8000/v1"}, **extra).validate()


async def test_the_llm_streams_from_a_generator_elsewhere() -> None:
    """``LlamaLLM(generator=...)``: the job process's LLM when the model is in the shared
    inference process; the same stream, no model here, and the generation closed at the end."""
    import asyncio

    from plugins.llama import LlamaLLM

    closed = asyncio.Event()
    seen: dict = {}

    class Elsewhere:
        async def pieces(self, messages, options):
            seen.update(messages=messages, options=options)
            try:
                for piece in ("Blue", " is", " calm", "."):
                    yield piece
            finally:
                closed.set()

    model = LlamaLLM(generator=Elsewhere(), model_name="smollm2", context_tokens=2048, max_tokens=7)
    parts = await _collect(model.chat(chat_ctx=_ctx("Name a color.")))
    assert "".join(parts) == "Blue is calm." and closed.is_set()
    assert seen["messages"][-1] == {"role": "user", "content": "Name a color."}
    assert seen["options"]["max_tokens"] == 7
    assert (model.model, model.provider) == ("smollm2", "llama.cpp (shared)")
    assert model.context_tokens == 2048 and model.token_counter() is None


HISTORY = [
    {"role": "system", "content": "Answer in one short sentence."},
    {"role": "user", "content": "Hello there."},
    {"role": "assistant", "content": "Hi! How can I help you today?"},
]


async def test_warm_up_caches_the_history_and_the_words_so_far(llama_instance) -> None:
    from plugins.llama import LlamaLLM

    model = LlamaLLM(model_instance=llama_instance, max_tokens=8)
    said = "Can you book a table for"
    assert await model.warm([*HISTORY, {"role": "user", "content": said}])
    cached = llama_instance.input_ids[: llama_instance.n_tokens].tolist()
    text = llama_instance.detokenize(cached, special=True).decode()
    # the reply to the whole sentence starts from this cache and computes only the rest
    assert said in text and "How can I help you today?" in text, text
    assert model.warmups == 1


async def test_warm_up_never_waits_for_or_delays_a_reply(llama_instance) -> None:
    from plugins.llama import LlamaLLM

    model = LlamaLLM(model_instance=llama_instance, max_tokens=20)
    joke = [*HISTORY, {"role": "user", "content": "Tell me a joke."}]
    reply = model.pieces(joke, model.options())
    await reply.__anext__()  # generating
    assert not await model.warm([*HISTORY, {"role": "user", "content": "Can you"}])
    await reply.aclose()
    assert model.warmups == 0
    # idle again: the caller going on is warmed
    assert await model.warm([*HISTORY, {"role": "user", "content": "Tell me a joke about"}])


async def test_warm_up_leaves_another_conversation_s_cache_alone(llama_instance) -> None:
    # sessions sharing the model take turns in its one cache: the one that replied last keeps
    # its history cached until it speaks again
    from plugins.llama import LlamaLLM

    model = LlamaLLM(model_instance=llama_instance, max_tokens=4)
    other = [{"role": "system", "content": "Answer in one short sentence."}]
    other += [{"role": "user", "content": "What is the capital of France?"}]
    async for _ in model.pieces(other, model.options()):
        pass
    assert not await model.warm([*HISTORY, {"role": "user", "content": "Can you"}])
    assert not await model.warm([other[0], {"role": "user", "content": "Can you"}])
    # the same conversation going on is warmed
    mine = [*other, {"role": "assistant", "content": "Paris."}]
    assert await model.warm([*mine, {"role": "user", "content": "And of Spain"}])
