"""A session's LLM requests fit the model's context, and a bad request spares the breaker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from livekit.agents import APIStatusError, llm

from agent.conversation.budget import ContextBudget, ContextWindow, estimate_tokens
from agent.conversation.summary import PROMPT
from agent.models.engines import Engines
from agent.models.resilience import APOLOGY, CircuitBreaker, ResilientLLM
from agent.session.voice_manager import VoiceManager
from agent.settings import Settings
from plugins.llama import LlamaLLM, openai_compatible
from tests.chat_server import RecordingChatServer


def conversation(turns: int, words: int = 30) -> llm.ChatContext:
    ctx = llm.ChatContext()
    ctx.add_message(role="system", content="You are a helpful assistant.")
    for i in range(turns):
        ctx.add_message(role="user", content=f"question {i} " + "word " * words)
        ctx.add_message(role="assistant", content=f"answer {i} " + "word " * words)
    return ctx


def request_tokens(ctx: llm.ChatContext, budget: ContextBudget) -> int:
    return sum(budget.tokens(i) for i in ctx.items)


def test_the_window_keeps_instructions_and_recent_turns_and_cuts_in_steps() -> None:
    budget = ContextBudget(context_tokens=1000, reply_tokens=100)
    window = ContextWindow(budget)
    ctx = conversation(3)
    sent, dropped = window.fit(ctx)
    assert sent.items == ctx.items and dropped == []  # it fits: sent as it is

    ctx = conversation(12)
    ctx.add_message(role="user", content="the latest question")
    sent, dropped = window.fit(ctx)
    assert request_tokens(sent, budget) <= 1000 - 100
    assert sent.items[0].text_content == "You are a helpful assistant."
    assert sent.items[-1].text_content == "the latest question"
    assert sent.items[1].role == "user"  # never opens on the assistant's half of a turn
    assert dropped and [d.id for d in dropped] == [i.id for i in ctx.items[1 : 1 + len(dropped)]]
    first_kept = sent.items[1].id

    # the next turns append behind the same prefix (a prompt cache keeps working) ...
    ctx.add_message(role="assistant", content="an answer")
    ctx.add_message(role="user", content="another question")
    again, more = window.fit(ctx)
    assert more == [] and again.items[1].id == first_kept

    # ... and a summary, once written, follows the instructions
    window.summary = "The user asked twelve questions."
    with_summary, _ = window.fit(ctx)
    assert with_summary.items[1].role == "system"
    assert "twelve questions" in (with_summary.items[1].text_content or "")
    assert request_tokens(with_summary, budget) <= 900


def test_a_preview_is_what_fit_sends_and_changes_nothing() -> None:
    # the prompt-cache warm-up reads the window while the caller speaks: it must not eat the
    # turns the next reply drops (the summary folds them)
    budget = ContextBudget(context_tokens=1000, reply_tokens=100)
    window = ContextWindow(budget)
    ctx = conversation(12)
    ctx.add_message(role="user", content="the latest question")
    preview = window.preview(ctx)
    assert window.dropped_total == 0
    sent, dropped = window.fit(ctx)
    assert [i.id for i in preview.items] == [i.id for i in sent.items]
    assert dropped and window.dropped_total == len(dropped)


def test_one_turn_longer_than_the_window_is_sent_shortened() -> None:
    budget = ContextBudget(context_tokens=400, reply_tokens=100)
    ctx = llm.ChatContext()
    ctx.add_message(role="system", content="Be brief.")
    ctx.add_message(role="user", content="blah " * 2000 + "so what is the time?")
    sent, _ = ContextWindow(budget).fit(ctx)
    assert request_tokens(sent, budget) <= 300
    assert (sent.items[-1].text_content or "").endswith("so what is the time?")


def test_the_embedded_model_says_too_long_as_a_request_fault(llama_instance: object) -> None:
    model = LlamaLLM(model_instance=llama_instance, max_tokens=8)
    assert model.context_tokens == 2048
    assert 2 <= model.count_tokens("Hello there, how are you?") <= 10

    async def ask() -> None:
        ctx = llm.ChatContext()
        ctx.add_message(role="user", content="hello " * 3000)
        async with model.chat(chat_ctx=ctx) as stream:
            async for _ in stream:
                pass

    with pytest.raises(APIStatusError) as e:
        asyncio.run(ask())
    assert e.value.status_code == 400 and not e.value.retryable


@pytest.fixture
async def chat_server() -> AsyncIterator[RecordingChatServer]:
    server = await RecordingChatServer().start()
    yield server
    await server.close()


def manager_on(server: RecordingChatServer, tmp_path: Path, **settings: object) -> VoiceManager:
    s = Settings(cache_path=tmp_path, **settings)  # type: ignore[arg-type]
    model = ResilientLLM(
        openai_compatible(base_url=server.url, model="m", timeout_s=5.0),
        first_token_timeout_s=5.0,
        breaker=CircuitBreaker(failures=3, reset_after_s=30),
    )
    return VoiceManager(Engines(s, llm=model, clip_store=None), instructions="Be brief.")


async def test_rejected_requests_do_not_open_the_breaker_for_everyone(
    chat_server: RecordingChatServer, tmp_path: Path
) -> None:
    manager = manager_on(chat_server, tmp_path)
    chat_server.fail_status = 400
    chat_server.fail_message = "This model's maximum context length is 2048 tokens."
    try:
        for _ in range(5):  # more than the breaker's 3 failures
            assert await manager.reply_to_text("alice", "tell me everything") == APOLOGY
        assert len(chat_server.requests) >= 5  # every one reached the endpoint
        chat_server.fail_status = None
        # another session of the process still has its LLM
        assert (await manager.reply_to_text("bob", "hello")).strip() == chat_server.reply
    finally:
        await manager.aclose()


@pytest.mark.slow
async def test_a_long_conversation_is_cut_to_the_window_and_summarized(
    chat_server: RecordingChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.conversation import summary

    monkeypatch.setattr(summary, "IDLE_BEFORE_SUMMARY_S", 0.05)  # a quick reader
    chat_server.reply = "Noted, " + "and more " * 20
    manager = manager_on(chat_server, tmp_path, llm_context_tokens=600, llm_max_tokens=60)
    try:
        for i in range(40):
            reply = await manager.reply_to_text("alice", f"Fact {i}: my number {i} is {i * 7}.")
            assert reply != APOLOGY
            await asyncio.sleep(0.2)  # the caller reads the answer: the summary runs now
    finally:
        await manager.aclose()
    replies = [r for r in chat_server.requests if r[0]["content"] != PROMPT]
    summaries = [r for r in chat_server.requests if r[0]["content"] == PROMPT]
    assert len(replies) == 40
    for messages in replies:
        tokens = sum(estimate_tokens(m["content"]) + 8 for m in messages)
        assert tokens <= 600 - 60
        assert messages[0]["content"].startswith("Be brief.")
    assert replies[-1][-1]["content"] == "Fact 39: my number 39 is 273."
    assert "Fact 0:" not in str(replies[-1])  # long gone from the window ...
    assert summaries  # ... folded into summaries, which later requests carry
    assert any("Summary of the earlier conversation" in m["content"] for m in replies[-1])


@pytest.mark.slow
async def test_a_long_conversation_on_the_embedded_model_never_breaks_the_llm(
    llama_instance: object, tmp_path: Path
) -> None:
    # every question ~240 tokens: the whole conversation outgrows the model's 2 048 tokens
    # after about 8 turns (before the budget: context errors, an open breaker, and the
    # apology for every session of the process)
    settings = Settings(cache_path=tmp_path, llm_context_tokens=640, llm_max_tokens=24)
    model = ResilientLLM(
        LlamaLLM(model_instance=llama_instance, max_tokens=24, seed=1),
        first_token_timeout_s=30.0,
        breaker=CircuitBreaker(failures=3, reset_after_s=30),
    )
    manager = VoiceManager(Engines(settings, llm=model, clip_store=None), instructions="Be brief.")
    filler = "Here is some background about my day that you may ignore. " * 16
    try:
        for i in range(11):
            reply = await manager.reply_to_text("alice", f"{filler} Question {i}: name a fruit.")
            assert reply and reply != APOLOGY, (i, reply)
        # another session of the same process answers normally afterwards
        other = await manager.reply_to_text("bob", "What colour is the sky?")
        assert other and other != APOLOGY
        assert model.breaker.state == "closed"
        window = manager.sessions["alice"].agent.context_window  # type: ignore[attr-defined]
        assert window is not None and window.dropped_total > 0
    finally:
        await manager.aclose()
