"""A job process's connection to the shared inference process.

One connection per event loop, opened on first use; requests are multiplexed on it by id.
When the inference process goes away every request in flight fails with a retryable
``APIConnectionError`` (livekit-agents' retry and fallback logic then applies) and the next
request connects again, so a restarted inference process is picked up without restarting
the jobs.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncGenerator
from typing import Any

from livekit.agents import APIConnectionError

from agent.models.shared.protocol import Header, ProtocolError, encode, read_frame, socket_path
from plugins._common.executor import report_queue_wait


class InferenceUnavailable(APIConnectionError):
    """No inference process answers at the address (yet, or any more)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class InferenceRequestError(APIConnectionError):
    """The inference process refused or failed this request; retrying would not help."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message, retryable=False)
        self.kind = kind


def _report_waits(header: Header, sent_at: float) -> None:
    """The inference process's queue waits for this request, told to the caller's sink
    (its session's turn spans)."""
    queued = header.get("queued")
    if isinstance(queued, dict):
        for engine, seconds in queued.items():
            if isinstance(seconds, int | float):
                report_queue_wait(str(engine), sent_at, float(seconds))


def _raise_for(header: Header) -> None:
    if "error" in header:
        raise InferenceRequestError(
            f"inference {header.get('kind', 'error')}: {header['error']}",
            str(header.get("kind", "engine")),
        )


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.waiting: dict[int, asyncio.Queue[tuple[Header, bytes] | Exception]] = {}
        self.reader_task = asyncio.create_task(self._read())
        self.lock = asyncio.Lock()
        self.closed = False

    async def _read(self) -> None:
        error: Exception = InferenceUnavailable("the inference process closed the connection")
        try:
            while True:
                header, body = await read_frame(self.reader)
                queue = self.waiting.get(header.get("id", -1))
                if queue is not None:
                    queue.put_nowait((header, body))
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError) as e:
            error = InferenceUnavailable(f"the inference process connection broke: {e}")
        finally:
            self.closed = True
            for queue in self.waiting.values():
                queue.put_nowait(error)
            self.writer.close()

    async def send(self, header: Header, body: bytes = b"") -> None:
        if self.closed:
            raise InferenceUnavailable("the inference process connection is closed")
        async with self.lock:
            try:
                self.writer.write(encode(header, body))
                await self.writer.drain()
            except ConnectionError as e:
                self.closed = True  # the next request connects again
                raise InferenceUnavailable(f"cannot reach the inference process: {e}") from e


class InferenceClient:
    def __init__(self, address: str, *, connect_timeout_s: float = 5.0) -> None:
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self._ids = itertools.count(1)
        self._connections: dict[asyncio.AbstractEventLoop, _Connection] = {}
        self._connecting: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    async def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        lock = self._connecting.setdefault(loop, asyncio.Lock())
        async with lock:
            conn = self._connections.get(loop)
            if conn is None or conn.closed or conn.reader_task.done():
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_unix_connection(socket_path(self.address), limit=1 << 20),
                        self.connect_timeout_s,
                    )
                except (OSError, TimeoutError) as e:
                    raise InferenceUnavailable(
                        f"no inference process at {self.address!r}: {e}"
                    ) from e
                conn = self._connections[loop] = _Connection(reader, writer)
        return conn

    async def call(
        self, op: str, header: Header | None = None, body: bytes = b"", *, timeout_s: float = 30.0
    ) -> tuple[Header, bytes]:
        """One request, one answer."""
        sent_at = time.time()
        conn, rid, queue = await self._send(op, header or {}, body)
        try:
            reply, reply_body = await self._next(queue, op, timeout_s)
            _report_waits(reply, sent_at)
            return reply, reply_body
        except (InferenceUnavailable, asyncio.CancelledError):
            await self._cancel(conn, rid)  # nobody waits for the answer any more
            raise
        finally:
            conn.waiting.pop(rid, None)

    async def stream(
        self, op: str, header: Header | None = None, *, timeout_s: float = 30.0
    ) -> AsyncGenerator[Header, None]:
        """One request, a stream of pieces; leaving the loop early cancels the request."""
        sent_at = time.time()
        conn, rid, queue = await self._send(op, header or {}, b"")
        finished = False
        try:
            while True:
                reply, _ = await self._next(queue, op, timeout_s)
                _report_waits(reply, sent_at)
                if reply.get("end"):
                    finished = True
                    return
                yield reply
        except InferenceRequestError:
            finished = True
            raise
        finally:
            conn.waiting.pop(rid, None)
            if not finished:  # abandoned midway (barge-in, timeout): free the engine
                await self._cancel(conn, rid)

    async def _send(
        self, op: str, header: Header, body: bytes
    ) -> tuple[_Connection, int, asyncio.Queue[tuple[Header, bytes] | Exception]]:
        conn = await self._connection()
        rid = next(self._ids)
        queue: asyncio.Queue[tuple[Header, bytes] | Exception] = asyncio.Queue()
        conn.waiting[rid] = queue
        try:
            await conn.send({**header, "id": rid, "op": op}, body)
        except BaseException:
            conn.waiting.pop(rid, None)
            raise
        return conn, rid, queue

    @staticmethod
    async def _next(
        queue: asyncio.Queue[tuple[Header, bytes] | Exception], op: str, timeout_s: float
    ) -> tuple[Header, bytes]:
        try:
            item = await asyncio.wait_for(queue.get(), timeout_s)
        except TimeoutError as e:
            raise InferenceUnavailable(
                f"the inference process did not answer {op!r} within {timeout_s:.0f} s"
            ) from e
        if isinstance(item, Exception):
            raise item
        _raise_for(item[0])
        return item

    @staticmethod
    async def _cancel(conn: _Connection, rid: int) -> None:
        if conn.closed:
            return
        try:
            await asyncio.shield(conn.send({"id": 0, "op": "cancel", "target": rid}))
        except (InferenceUnavailable, ProtocolError):
            pass

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        conn = self._connections.pop(loop, None)
        if conn is not None:
            conn.writer.close()
            conn.reader_task.cancel()


def probe(address: str, *, timeout_s: float = 2.0) -> Header:
    """A blocking hello, for code without an event loop (a job process's setup, the
    worker waiting for the inference process): what the process serves."""
    import json
    import struct

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(socket_path(address))
        sock.sendall(encode({"id": 1, "op": "hello"}))
        buf = b""
        while len(buf) < 8:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("inference process closed the connection")
            buf += chunk
        header_len, body_len = struct.unpack("!II", buf[:8])
        while len(buf) < 8 + header_len + body_len:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("inference process closed the connection")
            buf += chunk
    header: Header = json.loads(buf[8 : 8 + header_len])
    _raise_for(header)
    return header


def wait_ready(address: str, timeout_s: float, *, alive: Any = None) -> Header:
    """Probe until the inference process answers (its models are loaded then), or raise
    ``TimeoutError``; ``alive()`` returning False (the process died) ends the wait early."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return probe(address)
        except (OSError, ValueError) as e:
            if alive is not None and not alive():
                raise RuntimeError("the inference process exited while loading") from e
            if time.monotonic() > deadline:
                raise TimeoutError(f"no inference process answered at {address!r}") from e
            time.sleep(0.2)
