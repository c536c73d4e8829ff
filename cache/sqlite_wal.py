"""Opening a SQLite file that a worker's processes share (clip index, limits, memory).

Each opens its own connection (a connection must not cross a fork), in WAL mode so readers
never wait for the writer. Switching a fresh file to WAL and creating its schema can meet
another process doing the same at start-up; SQLite then answers "database is locked" at
once instead of waiting for its busy timeout, so that step is retried briefly.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

RETRIES = 50
RETRY_WAIT_S = 0.1


def open_wal(path: Path, schema: str, *, pragmas: tuple[str, ...] = ()) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with ``schema`` applied (autocommit: callers
    open their own transactions; usable from any thread, callers serialize)."""
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    for attempt in range(RETRIES):
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            for pragma in pragmas:
                db.execute(f"PRAGMA {pragma}")
            db.executescript(schema)
            return db
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == RETRIES - 1:
                db.close()
                raise
            time.sleep(RETRY_WAIT_S)
    raise AssertionError("unreachable")
