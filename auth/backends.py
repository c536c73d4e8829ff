"""Where limit counters live: SQLite for one worker, Redis for many.

Both make each check-and-count one atomic step on the shared store, so two processes can
never both take the last unit of a window or the last session slot:

- ``SqliteLimitBackend``: a file under ``CACHE_PATH`` used by every job process and the
  HTTP server of one worker; each step is one ``BEGIN IMMEDIATE`` transaction.
- ``RedisLimitBackend``: each step is one Lua script, run atomically by Redis.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from cache.sqlite_wal import open_wal

from .limits import BackendUnavailableError, LimitBackend

_SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (tenant TEXT, name TEXT, window_start REAL, used INTEGER,
                                    PRIMARY KEY (tenant, name, window_start));
CREATE TABLE IF NOT EXISTS sessions (tenant TEXT, session_id TEXT, expires REAL,
                                     PRIMARY KEY (tenant, session_id));
"""


_SQLITE_NOW = "SELECT (julianday('now') - 2440587.5) * 86400.0"


class SqliteLimitBackend:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = -1

    def _conn(self) -> sqlite3.Connection:
        if self._db is None or self._pid != os.getpid():
            db = open_wal(self.path, _SCHEMA)
            self._db, self._pid = db, os.getpid()
        return self._db

    def _txn(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            try:
                db = self._conn()
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(db, *args)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return result
            except sqlite3.Error as e:
                raise BackendUnavailableError(f"limit store: {e}") from e

    @staticmethod
    def _consume(
        db: sqlite3.Connection, tenant: str, name: str, amount: int, limit: int, start: float
    ) -> bool:
        row = db.execute(
            "SELECT used FROM windows WHERE tenant=? AND name=? AND window_start=?",
            (tenant, name, start),
        ).fetchone()
        used = row[0] if row else 0
        if used + amount > limit:
            return False
        db.execute(
            "INSERT INTO windows VALUES (?, ?, ?, ?) ON CONFLICT(tenant, name, window_start) "
            "DO UPDATE SET used = used + excluded.used",
            (tenant, name, start, amount),
        )
        db.execute("DELETE FROM windows WHERE window_start < ?", (start - 120.0,))
        return True

    @staticmethod
    def _acquire(db: sqlite3.Connection, tenant: str, sid: str, limit: int, lease: float) -> bool:
        # the database's clock, not the caller's: one clock for every process
        (now,) = db.execute(_SQLITE_NOW).fetchone()
        db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
        held = db.execute(
            "SELECT 1 FROM sessions WHERE tenant=? AND session_id=?", (tenant, sid)
        ).fetchone()
        if not held:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM sessions WHERE tenant=?", (tenant,)
            ).fetchone()
            if count >= limit:
                return False
        db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)", (tenant, sid, now + lease))
        return True

    @staticmethod
    def _release(db: sqlite3.Connection, tenant: str, sid: str) -> None:
        db.execute("DELETE FROM sessions WHERE tenant=? AND session_id=?", (tenant, sid))

    async def consume(
        self, tenant: str, name: str, amount: int, limit: int, window_start: float
    ) -> bool:
        return bool(
            await asyncio.to_thread(
                self._txn, self._consume, tenant, name, amount, limit, window_start
            )
        )

    async def acquire_session(
        self, tenant: str, session_id: str, limit: int, lease_s: float
    ) -> bool:
        return bool(
            await asyncio.to_thread(self._txn, self._acquire, tenant, session_id, limit, lease_s)
        )

    async def release_session(self, tenant: str, session_id: str) -> None:
        await asyncio.to_thread(self._txn, self._release, tenant, session_id)

    async def aclose(self) -> None:
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None


_CONSUME_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if used + amount > limit then return 0 end
redis.call('INCRBY', KEYS[1], amount)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# expiry by Redis's own clock (TIME), never the workers' clocks
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit, expires = tonumber(ARGV[1]), now + tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) and redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], expires, ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(expires - now) + 60)
return 1
"""


class RedisLimitBackend:
    """Limits shared by every worker that points at the same Redis."""

    def __init__(self, url: str, *, prefix: str = "voice-agent:limits", timeout_s: float = 1.0):
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._prefix = prefix
        self._consume_script = self._redis.register_script(_CONSUME_LUA)
        self._acquire_script = self._redis.register_script(_ACQUIRE_LUA)

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> int:
        import redis.exceptions

        try:
            return int(await script(keys=keys, args=args))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            raise BackendUnavailableError(f"redis: {e}") from e

    async def consume(
        self, tenant: str, name: str, amount: int, limit: int, window_start: float
    ) -> bool:
        key = f"{self._prefix}:{tenant}:{name}:{int(window_start)}"
        return bool(await self._run(self._consume_script, [key], [amount, limit, 180]))

    async def acquire_session(
        self, tenant: str, session_id: str, limit: int, lease_s: float
    ) -> bool:
        key = f"{self._prefix}:{tenant}:sessions"
        return bool(await self._run(self._acquire_script, [key], [limit, lease_s, session_id]))

    async def release_session(self, tenant: str, session_id: str) -> None:
        import redis.exceptions

        try:
            await self._redis.zrem(f"{self._prefix}:{tenant}:sessions", session_id)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            raise BackendUnavailableError(f"redis: {e}") from e

    async def aclose(self) -> None:
        await self._redis.aclose()


def backend_from_settings(redis_url: str, cache_path: Path) -> LimitBackend:
    if redis_url:
        return RedisLimitBackend(redis_url)
    return SqliteLimitBackend(cache_path / "limits.sqlite3")
