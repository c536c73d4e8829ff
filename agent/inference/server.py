"""The shared inference process: one copy of each model per machine, serving every job.

``python -m agent inference`` (started by ``start`` when ``INFERENCE_MODE=shared``) loads
the STT, TTS, turn-detector and embedded LLM models once and answers requests from all job
processes over a Unix socket (``protocol.py``). Requests that reach an engine at the same
moment are batched where the engine allows it: whisper decodes several sessions'
utterances in one CTranslate2 batch, Smart Turn scores several pauses in one ONNX run.
Piper and llama.cpp take one request at a time on their own threads.

A bad request gets an error frame naming what was wrong; a broken connection is closed;
neither disturbs the other connections.

The socket is private to the worker's user: a filesystem socket (0600) in a directory only
that user can open (0700), and a peer-credential check (``SO_PEERCRED``: same uid) on every
connection. Every option is checked against bounds, frames are limited to the largest
legitimate request, and connections and requests in flight are capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import threading
from contextlib import aclosing
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from livekit.agents import APIStatusError

from agent.log import logger
from agent.models.engines import Engines, build_llm
from agent.models.resilience import is_request_fault
from agent.models.shared.hello import Hello, VoiceHello
from agent.models.shared.protocol import (
    MAX_REQUEST_BODY_BYTES,
    Header,
    ProtocolError,
    encode,
    read_frame,
    socket_path,
)
from agent.models.voices import UnknownVoice
from agent.obs.metrics import INFERENCE_REFUSED
from agent.settings import Settings
from plugins._common.executor import set_queue_wait_sink
from plugins.llama import LlamaLLM

# whisper's context: a longer utterance is a client bug, refused rather than decoded
MAX_STT_SAMPLES = 30 * 16000
MAX_TURN_SAMPLES = 30 * 16000
# clients send sentences (or pieces of MAX_SYNTHESIS_CHARS); the server cuts longer text
# into pieces too, so this bounds the reply's size, not the model's memory
MAX_TTS_CHARS = 1000
MAX_CONNECTIONS = 64  # job processes and the HTTP API of one machine's workers
MAX_IN_FLIGHT_PER_CONNECTION = 32
MAX_LLM_TOKENS = 2048
MAX_MESSAGES = 256
# the bounds of every TTS option a client may send (None: the voice's own value)
_TTS_OPTION_BOUNDS: dict[str, tuple[float, float]] = {
    "length_scale": (0.25, 4.0),
    "noise_scale": (0.0, 2.0),
    "noise_w_scale": (0.0, 2.0),
    "volume": (0.0, 2.0),
}


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
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_MESSAGES
        or not all(
            isinstance(m, dict)
            and m.get("role") in ("system", "user", "assistant", "developer")
            and isinstance(m.get("content"), str)
            for m in value
        )
    ):
        raise BadRequest(f"messages must be a list of 1 to {MAX_MESSAGES} {{role, content}}")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f"{name} must be a number in [{low}, {high}]")
    return float(value)


def tts_options(value: Any, num_speakers: int) -> dict[str, Any]:
    """The options of a TTS request, each checked (a length_scale of 40 would make one
    sentence minutes long; a volume of 1e30 is noise)."""
    if not isinstance(value, dict):
        raise BadRequest("options must be an object")
    known = {"speaker_id", *_TTS_OPTION_BOUNDS}
    unknown = sorted(set(value) - known)
    if unknown:
        raise BadRequest(f"unknown TTS option {unknown[0][:32]!r}")
    out: dict[str, Any] = dict.fromkeys(known)
    out["volume"] = 1.0
    for name, (low, high) in _TTS_OPTION_BOUNDS.items():
        if value.get(name) is not None:
            out[name] = _number(value[name], name, low, high)
    speaker = value.get("speaker_id")
    if speaker is not None:
        if isinstance(speaker, bool) or not isinstance(speaker, int):
            raise BadRequest("speaker_id must be an integer")
        if not 0 <= speaker < num_speakers:
            raise BadRequest(f"speaker_id must be in [0, {num_speakers})")
        out["speaker_id"] = speaker
    return out


def llm_options(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest("options must be an object")
    unknown = sorted(set(value) - {"temperature", "max_tokens", "top_p", "seed"})
    if unknown:
        raise BadRequest(f"unknown LLM option {unknown[0][:32]!r}")
    out: dict[str, Any] = {}
    if "temperature" in value:
        out["temperature"] = _number(value["temperature"], "temperature", 0.0, 2.0)
    if "top_p" in value:
        out["top_p"] = _number(value["top_p"], "top_p", 0.0, 1.0)
    if "max_tokens" in value:
        tokens = value["max_tokens"]
        if isinstance(tokens, bool) or not isinstance(tokens, int):
            raise BadRequest("max_tokens must be an integer")
        out["max_tokens"] = int(_number(tokens, "max_tokens", 1, MAX_LLM_TOKENS))
    if value.get("seed") is not None:
        seed = value["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise BadRequest("seed must be an integer in [0, 2**32)")
        out["seed"] = seed
    elif "seed" in value:
        out["seed"] = None
    return out


def peer_uid(writer: asyncio.StreamWriter) -> int | None:
    """The uid of the process at the other end of a Unix socket (Linux SO_PEERCRED)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


def private_directory(path: Path) -> None:
    """Create ``path`` as 0700, or check that an existing one is ours and private."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(
            f"{path} must belong to this user and be private (mode 0700) to hold the "
            "inference socket"
        )


class InferenceServer:
    def __init__(self, settings: Settings, engines: Engines, llm: LlamaLLM | None) -> None:
        self.settings = settings
        self.engines = engines
        self.llm = llm
        self._server: asyncio.AbstractServer | None = None
        self._path: Path | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @classmethod
    def load(cls, settings: Settings) -> InferenceServer:
        """Load every model now, so that the first session finds them ready."""
        engines = Engines(settings, clip_store=None)
        # a stage on a serving engine (STT_BASE_URL, TTS_BASE_URL) is not loaded here: job
        # processes call that engine themselves
        if not settings.stt_base_url:
            _ = engines.stt
        if not settings.tts_base_url:
            _ = engines.piper
        _ = engines.turn_batcher
        served = None if settings.llm_base_url else build_llm(settings)
        return cls(settings, engines, served if isinstance(served, LlamaLLM) else None)

    def hello(self) -> Hello:
        """What a job process needs to build its remote engines."""
        piper = None if self.settings.tts_base_url else self.engines.piper
        return Hello(
            pid=os.getpid(),
            stt=None if self.settings.stt_base_url else self.engines.stt.resolved,
            voice=None
            if piper is None
            else VoiceHello(
                path=str(piper.model_path),
                config_path=str(piper.config_path) if piper.config_path else None,
                info=piper.info,
            ),
            llm=self.llm.model if self.llm else None,
            llm_context_tokens=self.llm.context_tokens if self.llm else None,
        )

    async def start(self, address: str) -> None:
        if not self.settings.tts_base_url:
            preload = [v.strip() for v in self.settings.models_preload.split(",") if v.strip()]
            for voice in preload:
                if self.engines.voices.is_default(voice):
                    continue
                try:
                    await self.engines.voices.manager.preload([voice])
                except Exception as e:  # a wrong id or a broken voice: said, not fatal
                    logger.error(
                        "MODELS_PRELOAD: not loaded", extra={"voice": voice, "error": str(e)}
                    )
        path = Path(socket_path(address))
        private_directory(path.parent)
        old_umask = os.umask(0o177)  # the socket is created 0600, never briefly wider
        try:
            self._server = await asyncio.start_unix_server(
                self._serve_connection, path=str(path), limit=1 << 20
            )
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        self._path = path
        self.engines.start_queue_gauge()
        logger.info("inference server ready", extra={"address": address, "pid": os.getpid()})

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.engines.close_voices()
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        uid = peer_uid(writer)
        if uid != os.getuid():
            INFERENCE_REFUSED.labels("other_user").inc()
            logger.warning("inference connection refused: another user", extra={"uid": uid})
            writer.close()
            return
        if len(self._connections) >= MAX_CONNECTIONS:
            INFERENCE_REFUSED.labels("too_many").inc()
            logger.warning("inference connection refused: too many connections")
            writer.close()
            return
        self._connections.add(task)
        lock = asyncio.Lock()
        running: dict[int, asyncio.Task[None]] = {}

        async def send(header: Header, body: bytes = b"") -> None:
            async with lock:
                writer.write(encode(header, body))
                await writer.drain()

        try:
            while True:
                header, body = await read_frame(reader, max_body=MAX_REQUEST_BODY_BYTES)
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
                if len(running) >= MAX_IN_FLIGHT_PER_CONNECTION:
                    await send({"id": rid, "error": "too many requests in flight",
                                "kind": "busy"})  # fmt: skip
                    continue
                job = asyncio.create_task(self._answer(rid, op, header, body, send))
                running[rid] = job
                job.add_done_callback(partial(_forget, running, rid))
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
        # this request's queue waits go back with its answer, for the caller's turn spans
        waits = RequestWaits()
        set_queue_wait_sink(waits.record)
        try:
            if op == "llm":
                async for piece in self._generate(header):
                    await send({"id": rid, "delta": piece, **waits.take()})
                await send({"id": rid, "end": True})
                return
            reply, reply_body = await self._call(op, header, body)
            await send({"id": rid, "end": True, **reply, **waits.take()}, reply_body)
        except BadRequest as e:
            await self._send_error(send, rid, "bad_request", e)
        except APIStatusError as e:
            # a 4xx from an engine (a prompt longer than the model's context) is the
            # request's fault too: the client must not count it against the engine
            kind = "bad_request" if is_request_fault(e) else "engine"
            await self._send_error(send, rid, kind, e)
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
            return self.hello().to_header(), b""
        if op == "stats":  # recent batch sizes: what batching achieved (tests, benchmarks)
            turn = self.engines.turn_batcher
            return {
                "stt_batches": self.engines.stt.batch_sizes,
                "turn_batches": getattr(turn, "batch_sizes", []),
                "connections": len(self._connections),
                "voices_resident": []
                if self.settings.tts_base_url
                else self.engines.voices.manager.resident(),
            }, b""
        if op == "language" and self.settings.stt_base_url:
            raise BadRequest("this inference process serves no stt (STT_BASE_URL)")
        if op in ("stt", "tts") and getattr(self.settings, f"{op}_base_url"):
            raise BadRequest(f"this inference process serves no {op} ({op.upper()}_BASE_URL)")
        if op == "stt":
            audio = _float32(body, MAX_STT_SAMPLES)
            beam = header.get("beam_size", 1)
            if not isinstance(beam, int) or not 1 <= beam <= 16:
                raise BadRequest("beam_size must be an int in 1..16")
            language = header.get("language")
            if language is not None and not isinstance(language, str):
                raise BadRequest("language must be a string or null")
            return {"text": await self.engines.stt.decode(audio, language, beam)}, b""
        if op == "language":
            audio = _float32(body, MAX_STT_SAMPLES)
            return {"language": await self.engines.stt.detect_language(audio)}, b""
        if op == "turn":
            audio = _float32(body, MAX_TURN_SAMPLES)
            return {"p": await self.engines.turn_batcher.predict(audio)}, b""
        if op == "tts":
            text = header.get("text")
            if not isinstance(text, str) or len(text) > MAX_TTS_CHARS:
                raise BadRequest(f"text must be a string of at most {MAX_TTS_CHARS} characters")
            voice = header.get("voice")
            if voice is not None and not isinstance(voice, str):
                raise BadRequest("voice must be a voice id")
            if voice is None or self.engines.voices.is_default(voice):
                piper = self.engines.piper
                options = tts_options(header.get("options", {}), piper.info.num_speakers)
                return {}, await piper.synthesize_with(text, options)
            voices = self.engines.voices
            try:
                known = voices.catalog.get(voice)
            except UnknownVoice as e:
                raise BadRequest(str(e)) from None
            if known.engine != "piper":
                raise BadRequest(f"{voice} is not synthesized here")
            # a voice not resident loads on the manager's loader thread: this request waits
            # for it, every other request goes on
            async with voices.manager.use(voice) as piper:
                options = tts_options(header.get("options", {}), piper.info.num_speakers)
                return {}, await piper.synthesize_with(text, options)
        raise BadRequest(f"unknown op {op!r}")

    async def _generate(self, header: Header) -> Any:
        if self.llm is None:
            raise BadRequest("this inference process serves no LLM (LLM_BASE_URL is set)")
        messages = _messages(header.get("messages"))
        opts = self.llm.options_from(llm_options(header.get("options") or {}))
        # a cancelled request (barge-in) closes this, which frees the model at the next token
        pieces = self.llm.pieces(messages, opts)
        async with aclosing(pieces):
            async for piece in pieces:
                yield piece


class RequestWaits:
    """The queue waits of one request, by engine, sent back as ``{"queued": {engine: s}}``."""

    def __init__(self) -> None:
        self._waits: dict[str, float] = {}
        self._lock = threading.Lock()  # recorded from engine threads

    def record(self, engine: str, began: float, seconds: float) -> None:
        with self._lock:
            self._waits[engine] = self._waits.get(engine, 0.0) + seconds

    def take(self) -> Header:
        with self._lock:
            waits, self._waits = self._waits, {}
        return {"queued": {e: round(s, 6) for e, s in waits.items()}} if waits else {}


def _forget(running: dict[int, asyncio.Task[None]], rid: int, _: asyncio.Task[None]) -> None:
    running.pop(rid, None)


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
