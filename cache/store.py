"""A content-addressed, size-bounded clip store shared by processes and workers.

Layout under ``root`` (``CACHE_PATH/clips``)::

    ab/abcdef….clip      one clip per key (cache/clip_file.py format)
    tmp/                 clips being written; renamed into place when complete
    index.sqlite3        size and last use of every clip, and the shared counters

Correctness across processes rests on two things:

- a clip becomes visible only by ``os.replace`` of a complete, sealed file, so a reader
  never sees a half-written clip, and a writer killed mid-way leaves only a temp file;
- the index is SQLite in WAL mode, and every commit runs in one ``BEGIN IMMEDIATE``
  transaction that evicts least-recently-used clips until the new one fits, records it and
  renames it into place. Commits are therefore serialized across all processes sharing the
  directory, and the clips on disk never exceed ``max_bytes``.

Reads touch ``last_used`` (that is what makes eviction LRU across processes) and count hits
and misses in the same database, so the statistics are those of every process together.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .clip_file import Clip, ClipFileWriter, clip_file_size, parse_clip
from .errors import CacheWriteError, ClipCorruptError
from .log import logger
from .sqlite_wal import open_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clips (key TEXT PRIMARY KEY, size INTEGER NOT NULL,
                                  last_used REAL NOT NULL);
CREATE INDEX IF NOT EXISTS clips_lru ON clips(last_used);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
COUNTERS = ("hits", "misses", "evictions", "corrupt", "write_errors")
STALE_TEMP_S = 3600.0


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    evictions: int
    corrupt: int
    write_errors: int
    clips: int
    bytes: int


class ClipStore:
    """Clips by key under ``root``, at most ``max_bytes`` of them on disk."""

    def __init__(
        self, root: Path, *, max_bytes: int, clock: Callable[[], float] = time.time
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._db_pid = -1
        # clips are what the agent said to someone: readable by the worker's user only
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.root.stat().st_mode & 0o077:
            # a read-only volume keeps its modes; the clips there are served all the same
            with contextlib.suppress(OSError):
                os.chmod(self.root, 0o700)
        (self.root / "tmp").mkdir(mode=0o700, exist_ok=True)
        self._reconcile()

    # --- paths and the index ---------------------------------------------------------------

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.clip"

    @contextlib.contextmanager
    def _index(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        with self._lock:
            # a connection must not cross a fork: job processes each open their own
            if self._db is None or self._db_pid != os.getpid():
                self._db = open_wal(
                    self.root / "index.sqlite3", _SCHEMA, pragmas=("synchronous=NORMAL",)
                )
                self._db_pid = os.getpid()
            db = self._db
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _count(db: sqlite3.Connection, name: str, n: int = 1) -> None:
        db.execute(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    def _reconcile(self) -> None:
        """After a crash or a restart: forget index rows whose file is gone, index clip files
        the index lacks (a writer killed between rename and commit), drop stale temp files."""
        now = self._clock()
        for tmp in (self.root / "tmp").iterdir():
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > STALE_TEMP_S:
                    tmp.unlink()
        with self._index(write=True) as db:
            # listed inside the transaction: no other process can commit or evict meanwhile
            on_disk = {p.stem: p for p in self.root.glob("??/*.clip")}
            indexed = {k for (k,) in db.execute("SELECT key FROM clips")}
            for key in indexed - set(on_disk):
                db.execute("DELETE FROM clips WHERE key = ?", (key,))
            for key in set(on_disk) - indexed:
                with contextlib.suppress(OSError):
                    st = on_disk[key].stat()
                    db.execute(
                        "INSERT OR REPLACE INTO clips(key, size, last_used) VALUES (?, ?, ?)",
                        (key, st.st_size, st.st_mtime),
                    )

    # --- reading ---------------------------------------------------------------------------

    def get(self, key: str) -> Clip | None:
        """The clip, or ``None`` on a miss. A corrupt clip is deleted and counts as a miss."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as e:  # unreadable: behave as a miss, say why once per call
            logger.warning("clip unreadable", extra={"key": key, "error": str(e)})
            data = None
        clip: Clip | None = None
        corrupt = False
        if data is not None:
            try:
                clip = parse_clip(data)
            except ClipCorruptError as e:
                corrupt = True
                logger.warning("corrupt clip deleted", extra={"key": key, "error": str(e)})
                with contextlib.suppress(OSError):
                    path.unlink()
        try:
            with self._index(write=True) as db:
                if clip is not None:
                    self._count(db, "hits")
                    # another process may have evicted it since we read it: index only
                    # what is still on disk (stable while we hold the write lock)
                    if path.exists():
                        db.execute(
                            "INSERT INTO clips(key, size, last_used) VALUES (?, ?, ?) "
                            "ON CONFLICT(key) DO UPDATE SET last_used = excluded.last_used",
                            (key, len(data or b""), self._clock()),
                        )
                else:
                    self._count(db, "misses")
                    if corrupt:
                        self._count(db, "corrupt")
                        db.execute("DELETE FROM clips WHERE key = ?", (key,))
        except sqlite3.Error as e:  # a broken index must not break playback
            logger.warning("clip index unavailable", extra={"error": str(e)})
        return clip

    def contains(self, key: str) -> bool:
        return self.path(key).is_file()

    # --- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self, key: str, sample_rate: int, num_channels: int) -> Iterator[ClipFileWriter]:
        """Write a clip as its audio arrives; it is stored only if the block ends normally.

        An exception inside the block (a cancelled or failed synthesis) discards it. Failing
        to store raises ``CacheWriteError`` after the block, so the caller has already
        delivered the audio.
        """
        tmp = self.root / "tmp" / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"
        try:
            f = open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        except OSError as e:
            raise self._write_failed(key, e) from e
        try:
            with f:
                w = ClipFileWriter(f, sample_rate, num_channels)
                yield w
                w.seal()
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise self._write_failed(key, e) from e
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._commit(key, tmp, clip_file_size(w.pcm_bytes))

    def put(self, key: str, clip: Clip) -> None:
        with self.writer(key, clip.sample_rate, clip.num_channels) as w:
            w.write(clip.pcm)

    def _write_failed(self, key: str, error: OSError) -> CacheWriteError:
        logger.warning("clip not stored", extra={"key": key, "error": str(error)})
        with contextlib.suppress(sqlite3.Error, OSError), self._index(write=True) as db:
            self._count(db, "write_errors")
        return CacheWriteError(f"clip {key[:12]} not stored: {error}")

    def _commit(self, key: str, tmp: Path, size: int) -> None:
        if size > self.max_bytes:
            tmp.unlink(missing_ok=True)
            return
        final = self.path(key)
        try:
            final.parent.mkdir(mode=0o700, exist_ok=True)
            with self._index(write=True) as db:
                db.execute("DELETE FROM clips WHERE key = ?", (key,))
                (total,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM clips").fetchone()
                if total + size > self.max_bytes:
                    self._evict(db, total + size - self.max_bytes)
                db.execute(
                    "INSERT INTO clips(key, size, last_used) VALUES (?, ?, ?)",
                    (key, size, self._clock()),
                )
                # inside the transaction: no other process commits or evicts meanwhile
                os.replace(tmp, final)
        except (OSError, sqlite3.Error) as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise self._write_failed(key, OSError(str(e))) from e

    def _evict(self, db: sqlite3.Connection, need: int) -> None:
        freed, evicted = 0, 0
        for key, size in db.execute(
            "SELECT key, size FROM clips ORDER BY last_used ASC"
        ).fetchall():
            if freed >= need:
                break
            with contextlib.suppress(FileNotFoundError):
                self.path(key).unlink()
            db.execute("DELETE FROM clips WHERE key = ?", (key,))
            freed += size
            evicted += 1
        if evicted:
            self._count(db, "evictions", evicted)

    # --- statistics ------------------------------------------------------------------------

    def stats(self) -> CacheStats:
        """Counters of every process sharing this directory, and what is stored now."""
        with self._index(write=False) as db:
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            clips, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM clips"
            ).fetchone()
        return CacheStats(
            **{name: int(counters.get(name, 0)) for name in COUNTERS}, clips=clips, bytes=size
        )

    def close(self) -> None:
        with self._lock:
            if self._db is not None and self._db_pid == os.getpid():
                self._db.close()
            self._db = None
