"""Memory across sessions: recalled by the same (tenant, identity) only, after a restart,
in another process and on Redis; expired by its TTL; shown and erased over the HTTP API."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from livekit.agents import llm

from agent.conversation.memory import (
    REMEMBERED,
    RedisMemoryStore,
    Remembered,
    SqliteMemoryStore,
    remembered_from,
)
from agent.http.api import build_app
from agent.http.runtime import build_context
from agent.settings import Settings
from tests.auth.tokens import AUDIENCE, HS_SECRET, ISSUER, hs256
from tests.chat_server import RecordingChatServer

REPO = Path(__file__).resolve().parents[2]
FACT = "My favourite colour is teal and my dog is called Biscuit."
QUESTION = "What is my favourite colour?"


@pytest.fixture
async def chat_server() -> AsyncIterator[RecordingChatServer]:
    server = await RecordingChatServer("Got it.").start()
    yield server
    await server.close()


async def job(cache: Path, server: RecordingChatServer, tenant: str, text: str, redis: str = ""):
    """One session of ``alice`` in a fresh process; the messages its LLM request carried."""
    before = len(server.requests)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.agent.memory_session",
        str(cache),
        server.url,
        tenant,
        "alice",
        text,
        redis,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out.decode().strip() == "Got it."
    replies = [r for r in server.requests[before:] if "Summarize" not in r[0]["content"]]
    return json.dumps(replies[0])


@pytest.mark.slow
async def test_a_fact_is_recalled_by_the_same_identity_of_the_same_tenant_only(
    tmp_path: Path, chat_server: RecordingChatServer
) -> None:
    first = await job(tmp_path, chat_server, "acme", FACT)
    assert "teal" in first and REMEMBERED not in first  # nothing remembered yet
    # another process, as after a worker restart: the fact is in what the LLM receives
    later = await job(tmp_path, chat_server, "acme", QUESTION)
    assert REMEMBERED in later and "teal" in later and "Biscuit" in later
    # the same identity in another tenant is a stranger
    other = await job(tmp_path, chat_server, "globex", QUESTION)
    assert "teal" not in other and REMEMBERED not in other
    assert (tmp_path / "memory.sqlite3").stat().st_mode & 0o777 == 0o600

    # a backend sees and erases what its tenant keeps, and only that
    s = Settings(
        cache_path=tmp_path,
        auth_jwt_secret=HS_SECRET,
        auth_audience=AUDIENCE,
        auth_issuer=ISSUER,
    )
    acme = {"Authorization": f"Bearer {hs256(tenant='acme')}"}
    globex = {"Authorization": f"Bearer {hs256(tenant='globex')}"}
    async with TestClient(TestServer(build_app(build_context(s)))) as client:
        shown = await (await client.get("/v1/memory/alice", headers=acme)).json()
        texts = [m["content"] for m in shown["remembered"]["messages"]]
        assert any("teal" in t for t in texts)
        theirs = await (await client.get("/v1/memory/alice", headers=globex)).json()
        assert "teal" not in json.dumps(theirs)  # globex's own alice, never acme's
        bad = await client.get("/v1/memory/" + "x" * 300, headers=acme)
        assert bad.status == 400
        gone = await (await client.delete("/v1/memory/alice", headers=acme)).json()
        assert gone == {"identity": "alice", "deleted": True}
        after = await (await client.get("/v1/memory/alice", headers=acme)).json()
        assert after["remembered"] is None
        assert (await client.get("/v1/memory/alice")).status == 401
    forgotten = await job(tmp_path, chat_server, "acme", QUESTION)
    assert "teal" not in forgotten


@pytest.mark.slow
async def test_memory_on_redis_is_shared_by_processes_and_keyed_by_tenant(
    tmp_path: Path, chat_server: RecordingChatServer, redis_url: str
) -> None:
    await job(tmp_path / "worker-a", chat_server, "acme", FACT, redis_url)
    # a second worker (its own CACHE_PATH) on the same Redis recalls it
    later = await job(tmp_path / "worker-b", chat_server, "acme", QUESTION, redis_url)
    assert "teal" in later and REMEMBERED in later
    other = await job(tmp_path / "worker-b", chat_server, "globex", QUESTION, redis_url)
    assert "teal" not in other
    assert not (tmp_path / "worker-a" / "memory.sqlite3").exists()  # Redis, not SQLite
    # past MEMORY_MAX_MESSAGES (4 here) the oldest messages are folded into the summary by
    # the LLM when the session ends, and the summary heads the next session's context
    before = len(chat_server.requests)
    await job(tmp_path / "worker-a", chat_server, "acme", "Thanks, that is all.", redis_url)
    summary_requests = [r for r in chat_server.requests[before:] if "Summarize" in r[0]["content"]]
    assert len(summary_requests) == 1 and "teal" in json.dumps(summary_requests[0])
    later = await job(tmp_path / "worker-b", chat_server, "acme", QUESTION, redis_url)
    assert f"{REMEMBERED}: Got it." in later  # the recording server's reply, as the summary
    assert FACT not in later  # the fact itself has rolled out of the recent messages


def record() -> Remembered:
    ctx = llm.ChatContext()
    ctx.add_message(role="user", content=FACT)
    ctx.add_message(role="assistant", content="Got it.")
    return remembered_from(ctx, summary="", keep=10)


async def test_the_ttl_expires_a_conversation(tmp_path: Path, redis_url: str) -> None:
    now = [1000.0]
    store = SqliteMemoryStore(tmp_path / "m.sqlite3", ttl_s=60, clock=lambda: now[0])
    await store.save("acme", "alice", record())
    now[0] += 59
    assert (await store.load("acme", "alice")) is not None
    now[0] += 2
    assert (await store.load("acme", "alice")) is None
    await store.aclose()

    redis_store = RedisMemoryStore(redis_url, ttl_s=0.5)
    await redis_store.save("acme", "alice", record())
    assert (await redis_store.load("acme", "alice")) is not None
    await asyncio.sleep(0.8)
    assert (await redis_store.load("acme", "alice")) is None
    await redis_store.aclose()


def test_what_is_kept_is_bounded_and_masked() -> None:
    ctx = llm.ChatContext()
    for i in range(10):
        ctx.add_message(role="user", content=f"message {i} " + "a" * 5000)
    ctx.add_message(role="user", content="my key is sk-secret-12345, keep it")
    kept = remembered_from(
        ctx, summary="s", keep=3, mask=lambda t: t.replace("sk-secret-12345", "***")
    )
    assert len(kept.messages) == 3 and all(len(m["content"]) <= 2000 for m in kept.messages)
    assert "sk-secret" not in kept.to_json() and "***" in kept.messages[-1]["content"]
    again = Remembered.from_json(kept.to_json())
    assert again.messages == kept.messages
    assert replace(again, updated_at=0).summary == "s"
