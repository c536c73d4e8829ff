"""Memory across sessions: what a participant said before, for their next session.

Opt-in per tenant (``TENANT_LIMITS[tenant].memory``, ``MEMORY_ENABLED`` for the others).
A conversation is keyed by (tenant, participant identity): a tenant never reads another's,
even for the same identity. The record keeps the last ``MEMORY_MAX_MESSAGES`` user and
agent messages and a summary of what came before (the session's running summary, see
budget.py), and expires ``MEMORY_TTL_S`` after its last save. It is saved when a session
ends, and put at the head of the LLM context when that identity's next session starts.

Where: a SQLite file under ``CACHE_PATH`` (one worker: every job process and the HTTP API
share it; each write one transaction) or Redis (several workers: one key per conversation
with its TTL), the same choice and rules as the limit store (auth/backends.py). Text is
masked like the logs (secrets, bearer tokens, JWTs) before it is stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from livekit.agents import llm

from cache.sqlite_wal import open_wal

MAX_IDENTITY_CHARS = 256
MAX_MESSAGE_CHARS = 2000
MAX_SUMMARY_CHARS = 2000
REMEMBERED = "What you remember from earlier conversations with this caller"


class MemoryUnavailableError(Exception):
    """The memory store cannot be reached or used."""


@dataclass(slots=True)
class Remembered:
    """One conversation as kept: recent messages (oldest first) and a summary of older ones."""

    messages: list[dict[str, str]] = field(default_factory=list)  # {"role", "content"}
    summary: str = ""
    updated_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {"messages": self.messages, "summary": self.summary, "updated_at": self.updated_at}
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Remembered:
        data = json.loads(raw)
        messages = [
            {"role": str(m["role"]), "content": str(m["content"])}
            for m in data.get("messages", [])
            if m.get("role") in ("user", "assistant")
        ]
        return cls(messages, str(data.get("summary", "")), float(data.get("updated_at", 0.0)))

    def as_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "summary": self.summary, "updated_at": self.updated_at}

    def chat_context(self) -> llm.ChatContext:
        """The remembered conversation as the head of a new session's history."""
        ctx = llm.ChatContext()
        if self.summary:
            ctx.add_message(role="system", content=f"{REMEMBERED}: {self.summary}")
        elif self.messages:
            ctx.add_message(role="system", content=f"{REMEMBERED} follows.")
        for m in self.messages:
            ctx.add_message(role=m["role"], content=m["content"])  # type: ignore[arg-type]
        return ctx


def remembered_from(
    history: llm.ChatContext,
    *,
    summary: str,
    keep: int,
    mask: Callable[[str], str] = lambda text: text,
) -> Remembered:
    """What to keep of a finished session's ``history``: its last ``keep`` user and agent
    messages (the remembered head it started with included, so memory rolls forward) and
    ``summary``, each text masked and bounded."""
    messages = [
        {"role": item.role, "content": mask(item.text_content or "")[:MAX_MESSAGE_CHARS]}
        for item in history.items
        if item.type == "message" and item.role in ("user", "assistant") and item.text_content
    ]
    return Remembered(messages[-keep:], mask(summary)[:MAX_SUMMARY_CHARS], time.time())


class MemoryStore(Protocol):
    async def load(self, tenant: str, identity: str) -> Remembered | None: ...
    async def save(self, tenant: str, identity: str, record: Remembered) -> None: ...
    async def delete(self, tenant: str, identity: str) -> bool: ...
    async def aclose(self) -> None: ...


def _check_identity(identity: str) -> None:
    if not identity or len(identity) > MAX_IDENTITY_CHARS:
        raise ValueError(f"identity must be 1-{MAX_IDENTITY_CHARS} characters")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS memory (tenant TEXT, identity TEXT, record TEXT, expires REAL,
                                   PRIMARY KEY (tenant, identity));
"""


class SqliteMemoryStore:
    """One worker's memory: a WAL-mode SQLite file shared by its processes."""

    def __init__(self, path: Path, *, ttl_s: float, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = -1

    def _conn(self) -> sqlite3.Connection:
        if self._db is None or self._pid != os.getpid():  # a forked process opens its own
            db = open_wal(self.path, _SCHEMA)
            os.chmod(self.path, 0o600)  # transcripts: the worker's user only
            self._db, self._pid = db, os.getpid()
        return self._db

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            try:
                return fn(self._conn())
            except sqlite3.Error as e:
                raise MemoryUnavailableError(f"memory store: {e}") from e

    async def load(self, tenant: str, identity: str) -> Remembered | None:
        _check_identity(identity)

        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT record FROM memory WHERE tenant=? AND identity=? AND expires > ?",
                (tenant, identity, self._clock()),
            ).fetchone()
            return row[0] if row else None

        raw = await asyncio.to_thread(self._run, read)
        return Remembered.from_json(raw) if raw else None

    async def save(self, tenant: str, identity: str, record: Remembered) -> None:
        _check_identity(identity)
        now = self._clock()

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO memory VALUES (?, ?, ?, ?) ON CONFLICT(tenant, identity) "
                "DO UPDATE SET record=excluded.record, expires=excluded.expires",
                (tenant, identity, record.to_json(), now + self.ttl_s),
            )
            db.execute("DELETE FROM memory WHERE expires <= ?", (now,))  # the TTL sweep

        await asyncio.to_thread(self._run, write)

    async def delete(self, tenant: str, identity: str) -> bool:
        _check_identity(identity)

        def remove(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "DELETE FROM memory WHERE tenant=? AND identity=? AND expires > ?",
                (tenant, identity, self._clock()),
            )
            return cur.rowcount > 0

        return bool(await asyncio.to_thread(self._run, remove))

    async def aclose(self) -> None:
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None


class RedisMemoryStore:
    """Memory shared by every worker on the same Redis: one key per conversation, with the
    TTL as the key's expiry. Tenant ids never contain ":", so keys cannot collide."""

    def __init__(
        self, url: str, *, ttl_s: float, prefix: str = "voice-agent:memory", timeout_s: float = 1.0
    ) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self.ttl_s = ttl_s
        self._prefix = prefix

    def _key(self, tenant: str, identity: str) -> str:
        _check_identity(identity)
        return f"{self._prefix}:{tenant}:{identity}"

    async def _call(self, fn: Callable[[], Any]) -> Any:
        import redis.exceptions

        try:
            return await fn()
        except (redis.exceptions.RedisError, OSError) as e:
            raise MemoryUnavailableError(f"redis: {e}") from e

    async def load(self, tenant: str, identity: str) -> Remembered | None:
        key = self._key(tenant, identity)
        raw = await self._call(lambda: self._redis.get(key))
        return Remembered.from_json(raw) if raw else None

    async def save(self, tenant: str, identity: str, record: Remembered) -> None:
        key = self._key(tenant, identity)
        ttl_ms = max(1, int(self.ttl_s * 1000))
        await self._call(lambda: self._redis.set(key, record.to_json(), px=ttl_ms))

    async def delete(self, tenant: str, identity: str) -> bool:
        key = self._key(tenant, identity)
        return bool(await self._call(lambda: self._redis.delete(key)))

    async def aclose(self) -> None:
        await self._redis.aclose()


def memory_store(redis_url: str, cache_path: Path, ttl_s: float) -> MemoryStore:
    """Redis when a URL is given, else the SQLite file under ``cache_path``."""
    if redis_url:
        return RedisMemoryStore(redis_url, ttl_s=ttl_s)
    return SqliteMemoryStore(cache_path / "memory.sqlite3", ttl_s=ttl_s)
