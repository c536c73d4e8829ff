"""The shared inference process: one copy of each model per machine, serving every job.

``python -m agent inference`` (started by ``start`` when ``INFERENCE_MODE=shared``) loads
the STT, TTS, turn-detector and embedded LLM models once and answers requests from all job
processes over a Unix socket (``protocol.py``). Requests that reach an engine at the same
moment are batched where the engine allows it: whisper decodes several sessions'
utterances in one CTranslate2 batch, Smart Turn scores several pauses in one ONNX run.
Piper and llama.cpp take one request at a time on their own threads.

A bad request gets an error frame naming what was wrong; a broken connection is closed;
neither disturbs the other connections.
"""

from __future__ import annotations

import asyncio
import os
import signal
from contextlib import aclosing
from typing import Any

import numpy as np

from plugins.llama import LlamaLLM

from ..engines import Engines, build_llm
from ..log import logger
from ..settings import Settings
from .protocol import Header, ProtocolError, encode, read_frame, socket_path

# whisper's context: a longer utterance is a client bug, refused rather than decoded
MAX_STT_SAMPLES = 30 * 16000
MAX_TURN_SAMPLES = 30 * 16000
MAX_TTS_CHARS = 100_000


class BadRequest(ValueError):
    """The request itself is wrong; the client should not retry it."""


def _float32(body: bytes, limit: int) -> np.ndarray:
    if len(body) % 4:
        raise BadRequest("audio body is not float32 samples")
    audio = np.frombuffer(body, dtype="<f4")
    if audio.size > limit:
        raise BadRequest(f"audio too long: {audio.size} samples, at most {limit}")
    if not np.all(np.isfinite(audio)):
        raise BadRequest("audio has NaN or infinite samples")
    return audio


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value
    ):
        raise BadRequest("messages must be a list of {role, content} strings")
    return [{"role": m["role"], "content": m["content"]} for m in value]


class InferenceServer:
    def __init__(self, settings: Settings, engines: Engines, llm: LlamaLLM | None) -> None:
        self.settings = settings
        self.engines = engines
        self.llm = llm
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @classmethod
    def load(cls, settings: Settings) -> InferenceServer:
        """Load every model now, so that the first session finds them ready."""
        engines = Engines(settings, clip_store=None)
        _ = engines.stt, engines.piper, engines.turn_batcher
        served = None if settings.llm_base_url else build_llm(settings)
        return cls(settings, engines, served if isinstance(served, LlamaLLM) else None)

    def hello(self) -> Header:
        """What a job process needs to build its remote engines."""
        resolved = self.engines.stt.resolved
        piper = self.engines.piper
        return {
            "pid": os.getpid(),
            "stt": {
                "source": resolved.source,
                "device": resolved.device,
                "compute_type": resolved.compute_type,
            },
            "voice": {
                "path": str(piper._model_path),
                "config_path": str(piper._config_path) if piper._config_path else None,
                "sample_rate": piper._info.sample_rate,
                "num_speakers": piper._info.num_speakers,
                "length_scale": piper._info.length_scale,
            },
            "llm": self.llm.model if self.llm else None,
        }

    async def start(self, address: str) -> None:
        self._server = await asyncio.start_unix_server(
            self._serve_connection, path=socket_path(address), limit=1 << 20
        )
        self.engines.start_queue_gauge()
        logger.info("inference server ready", extra={"address": address, "pid": os.getpid()})

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        lock = asyncio.Lock()
        running: dict[int, asyncio.Task[None]] = {}

        async def send(header: Header, body: bytes = b"") -> None:
            async with lock:
                writer.write(encode(header, body))
                await writer.drain()

        try:
            while True:
                header, body = await read_frame(reader)
                rid = header.get("id")
                op = header.get("op")
                if not isinstance(rid, int) or not isinstance(op, str):
                    await send({"id": rid, "error": "a request needs an int id and an op",
                                "kind": "bad_request"})  # fmt: skip
                    continue
                if op == "cancel":  # the client lost interest (barge-in, closed stream)
                    target = running.get(header.get("target", -1))
                    if target is not None:
                        target.cancel()
                    continue
                job = asyncio.create_task(self._answer(rid, op, header, body, send))
                running[rid] = job
                job.add_done_callback(lambda _, rid=rid: running.pop(rid, None))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the job process went away: its requests go with it
        except ProtocolError as e:
            logger.warning("inference connection closed: bad frame", extra={"error": str(e)})
        finally:
            for job in running.values():
                job.cancel()
            writer.close()
            self._connections.discard(task)

    async def _answer(self, rid: int, op: str, header: Header, body: bytes, send: Any) -> None:
        try:
            if op == "llm":
                async for piece in self._generate(header):
                    await send({"id": rid, "delta": piece})
                await send({"id": rid, "end": True})
                return
            reply, reply_body = await self._call(op, header, body)
            await send({"id": rid, "end": True, **reply}, reply_body)
        except (BadRequest, TypeError) as e:  # TypeError: unknown option names
            await self._send_error(send, rid, "bad_request", e)
        except Exception as e:  # an engine failure answers this request only
            logger.warning("inference request failed", extra={"op": op, "error": str(e)})
            await self._send_error(send, rid, "engine", e)

    async def _send_error(self, send: Any, rid: int, kind: str, e: BaseException) -> None:
        try:
            await send({"id": rid, "error": f"{type(e).__name__}: {e}", "kind": kind})
        except (ConnectionError, ProtocolError):
            pass

    async def _call(self, op: str, header: Header, body: bytes) -> tuple[Header, bytes]:
        if op == "hello":
            return self.hello(), b""
        if op == "stats":  # recent batch sizes: what batching achieved (tests, benchmarks)
            turn = self.engines.turn_batcher
            return {
                "stt_batches": self.engines.stt.batch_sizes,
                "turn_batches": getattr(turn, "batch_sizes", []),
                "connections": len(self._connections),
            }, b""
        if op == "stt":
            audio = _float32(body, MAX_STT_SAMPLES)
            beam = header.get("beam_size", 1)
            if not isinstance(beam, int) or not 1 <= beam <= 16:
                raise BadRequest("beam_size must be an int in 1..16")
            language = header.get("language")
            if language is not None and not isinstance(language, str):
                raise BadRequest("language must be a string or null")
            return {"text": await self.engines.stt.decode(audio, language, beam)}, b""
        if op == "turn":
            audio = _float32(body, MAX_TURN_SAMPLES)
            return {"p": await self.engines.turn_batcher.predict(audio)}, b""
        if op == "tts":
            text, options = header.get("text"), header.get("options", {})
            if not isinstance(text, str) or len(text) > MAX_TTS_CHARS:
                raise BadRequest(f"text must be a string of at most {MAX_TTS_CHARS} characters")
            if not isinstance(options, dict):
                raise BadRequest("options must be an object")
            return {}, await self.engines.piper.synthesize_with(text, options)
        raise BadRequest(f"unknown op {op!r}")

    async def _generate(self, header: Header) -> Any:
        if self.llm is None:
            raise BadRequest("this inference process serves no LLM (LLM_BASE_URL is set)")
        messages = _messages(header.get("messages"))
        opts = self.llm.options_from(header.get("options") or {})
        # a cancelled request (barge-in) closes this, which frees the model at the next token
        pieces = self.llm.pieces(messages, opts)
        async with aclosing(pieces):
            async for piece in pieces:
                yield piece


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """End with the worker that started us, even when it was SIGKILLed."""
    while os.getppid() == parent:  # noqa: ASYNC110 (no event tells us; polling is the way)
        await asyncio.sleep(1.0)
    logger.warning("inference server: the worker is gone, exiting")
    stop.set()


async def run(settings: Settings, address: str, *, parent: int | None = None) -> int:
    server = InferenceServer.load(settings)
    await server.start(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch_parent(parent, stop)) if parent else None
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    await server.close()
    logger.info("inference server stopped")
    return 0
