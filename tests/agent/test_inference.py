"""The shared inference process: one copy of each model, many job processes.

The server runs as the real ``python -m agent inference`` process; clients are the job
side's engines (``Engines.remote``) in this process or in child processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.inference.host import private_address
from agent.models.engines import Engines
from agent.models.shared.client import (
    InferenceClient,
    InferenceRequestError,
    InferenceUnavailable,
    probe,
    wait_ready,
)
from agent.models.shared.protocol import encode, socket_path
from agent.obs.traces import SessionQueueWaits
from agent.settings import Settings
from plugins._common.executor import set_queue_wait_sink
from tests.audio_fixtures import speak, wer

REPO = Path(__file__).resolve().parents[2]
SENTENCES = [
    "Please call me back tomorrow morning.",
    "How is the weather today?",
    "Turn left at the next corner.",
]


def settings_for(cache_dir: Path, **extra: str) -> Settings:
    env = {"CACHE_PATH": str(cache_dir), "LLM_SEED": "42", **extra}
    return Settings.from_env(env)


def start_server(cache_dir: Path, address: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CACHE_PATH": str(cache_dir), "LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "inference", "--address", address], cwd=REPO, env=env
    )


@pytest.fixture(scope="module")
def server(cache_dir: Path) -> Iterator[str]:
    address = private_address()
    proc = start_server(cache_dir, address)
    try:
        wait_ready(address, 120, alive=lambda: proc.poll() is None)
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


def speech(text: str) -> np.ndarray:
    return speak(text).astype(np.float32) / 32768


async def test_every_engine_answers_through_the_shared_process(
    server: str, cache_dir: Path, whisper_stt
) -> None:
    engines = Engines.remote(settings_for(cache_dir), server)
    # the inference process's queue waits come back to the caller's sink (turn spans)
    waits = SessionQueueWaits()
    set_queue_wait_sink(waits.record)
    audio = [speech(s) for s in SENTENCES]
    texts = await asyncio.gather(*(engines.stt.transcribe(a) for a in audio))
    for sentence, text in zip(SENTENCES, texts, strict=True):
        assert wer(sentence, text) <= 0.2, text
    # the same text as this process's own model decoding one at a time
    assert texts == [whisper_stt.transcribe_array(a) for a in audio]
    p = await engines.turn_batcher.predict(audio[0])
    assert 0.0 <= p <= 1.0
    pcm = await engines.piper.synthesize_sentence("Hello there.", engines.piper.current_options())
    assert len(pcm) > engines.piper.sample_rate  # > 0.5 s of 16-bit audio
    assert np.abs(np.frombuffer(pcm, np.int16)).max() > 1000
    from livekit.agents import llm

    ctx = llm.ChatContext()
    ctx.add_message(role="user", content="Say hello.")
    pieces = []
    async with engines.llm.chat(chat_ctx=ctx) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                pieces.append(chunk.delta.content)
    assert len(pieces) > 1 and "".join(pieces).strip()  # streamed, token by token
    told = waits.between(0, time.time())
    assert {"whisper", "smart-turn", "piper", "llama"} <= {w.engine for w in told}, told
    assert all(w.seconds >= 0 for w in told)


async def test_requests_from_several_processes_are_batched(server: str) -> None:
    """Two job processes' decodes at the same moment share encoder/decoder runs."""
    audio = [speech(s) for s in SENTENCES * 2]
    clients = [InferenceClient(server), InferenceClient(server)]

    async def decode(i: int, a: np.ndarray) -> str:
        reply, _ = await clients[i % 2].call(
            "stt", {"language": "en", "beam_size": 1}, a.astype("<f4").tobytes()
        )
        return str(reply["text"])

    texts = await asyncio.gather(*(decode(i, a) for i, a in enumerate(audio)))
    assert texts[:3] == texts[3:]
    stats, _ = await clients[0].call("stats")
    assert max(stats["stt_batches"]) > 1, stats
    for c in clients:
        await c.aclose()


def test_a_job_process_on_the_shared_process_loads_no_model(server: str, cache_dir: Path) -> None:
    """What a worker's job process runs at setup and per session: no engine library."""
    code = f"""
import sys, json
from agent.models.engines import Engines
from agent.session.factory import voice_session
from agent.settings import Settings
engines = Engines.remote(Settings.from_env({{"CACHE_PATH": {str(cache_dir)!r}}}), {server!r})
engines.preload()
voice_session(engines)
heavy = ("faster_whisper", "ctranslate2", "llama_cpp", "torch")
print(json.dumps({{"heavy": [m for m in heavy if m in sys.modules],
                   "loaded": sorted(engines.loaded())}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["loaded"] == ["llm", "stt", "tts", "turn"]


async def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(server: str) -> None:
    client = InferenceClient(server)
    bad = [
        ("nope", {}, b""),
        ("stt", {"beam_size": 1}, b"\x00\x01\x02"),  # not float32
        ("stt", {"beam_size": 0}, np.zeros(160, "<f4").tobytes()),
        ("stt", {}, np.full(160, np.nan, "<f4").tobytes()),
        ("stt", {}, np.zeros(31 * 16000, "<f4").tobytes()),  # past whisper's 30 s
        ("tts", {"text": 5}, b""),
        ("tts", {"text": "hi", "options": {"pitch": 3}}, b""),  # unknown option
    ]
    for op, header, body in bad:
        with pytest.raises(InferenceRequestError) as info:
            await client.call(op, header, body)
        assert info.value.kind == "bad_request" and not info.value.retryable, op
    with pytest.raises(InferenceRequestError):
        async for _ in client.stream("llm", {"messages": "hello"}):
            pass
    # a peer that sends garbage loses its own connection only
    reader, writer = await asyncio.open_unix_connection(socket_path(server))
    writer.write(b"\x00\x00\x00\x05\x00\x00\x00\x00{oops")
    writer.write(encode({"id": 1, "op": "hello"}))
    try:  # closed, hello unanswered (a reset when the server closed with bytes unread)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
    except ConnectionResetError:
        pass
    writer.close()
    reply, _ = await client.call("stt", {"beam_size": 1}, speech(SENTENCES[0]).tobytes())
    assert wer(SENTENCES[0], reply["text"]) <= 0.2
    await client.aclose()


@pytest.mark.slow
async def test_jobs_survive_the_inference_process_restarting(cache_dir: Path) -> None:
    address = private_address()
    proc = start_server(cache_dir, address)
    client = InferenceClient(address)
    try:
        wait_ready(address, 120, alive=lambda: proc.poll() is None)
        audio = speech(SENTENCES[1]).tobytes()
        assert (await client.call("stt", {"beam_size": 1}, audio))[0]["text"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with pytest.raises(InferenceUnavailable) as info:  # retryable: livekit-agents retries
            await client.call("stt", {"beam_size": 1}, audio)
        assert info.value.retryable
        proc = start_server(cache_dir, address)
        wait_ready(address, 120, alive=lambda: proc.poll() is None)
        reply, _ = await client.call("stt", {"beam_size": 1}, audio)  # same client, reconnected
        assert wer(SENTENCES[1], reply["text"]) <= 0.2
    finally:
        await client.aclose()
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_the_host_restarts_a_dead_inference_process(cache_dir: Path) -> None:
    from agent.inference.host import InferenceHost

    address = private_address()
    host = InferenceHost(settings_for(cache_dir), address)
    try:
        first = host.start()["pid"]
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 120
        pid = first
        while pid == first and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                pid = probe(address)["pid"]
            except OSError:
                continue
        assert pid != first and host.restarts == 1
    finally:
        host.stop()
    with pytest.raises(OSError):
        probe(address)  # stopped with the worker


@pytest.mark.slow
async def test_a_voice_turn_with_barge_in_on_the_shared_engines(
    server: str, cache_dir: Path
) -> None:
    """The VoiceManager path a room runs (VAD, turn detector, STT, LLM, TTS, barge-in) with
    every model in the other process."""
    from agent.session.voice_manager import VoiceManager
    from benchmarks.harness import BARGE_IN, QUESTIONS, Caller, espeak_16k

    engines = Engines.remote(settings_for(cache_dir, CACHE_MAX_BYTES="0"), server)
    manager = VoiceManager(engines, instructions="Answer in one short sentence.")
    try:
        caller = await Caller.join(manager, "caller")
        result = await caller.turn(espeak_16k(QUESTIONS[0]))
        assert result.error is None and result.voice_to_voice_ms is not None
        assert wer(QUESTIONS[0], caller.probe.transcripts[-1]) <= 0.3
        stopped_ms = await caller.barge_in(espeak_16k(BARGE_IN), after=1.0)
        assert stopped_ms is not None  # the agent's audio stopped for the user
    finally:
        await manager.aclose()


# --- finding 3: the inference socket is private ----------------------------------------

# the other user runs the system's interpreter (the venv may sit where it cannot read)
OTHER_USER_PYTHON = "/usr/bin/python3"


def run_as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by another local user (uid/gid 65534); needs root, as CI has."""
    if os.getuid() != 0:
        pytest.fail("this test switches to another uid and must run as root (as CI does)")
    return subprocess.run(
        [OTHER_USER_PYTHON, "-c", code],
        cwd="/",
        user=65534,
        group=65534,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_socket_is_private_to_the_workers_user(server: str) -> None:
    path = Path(server)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    with pytest.raises(ValueError, match="filesystem path"):
        socket_path("@voice-agent-inference-1")


def test_another_uid_cannot_connect(server: str) -> None:
    """As another user (nobody) on the same machine, connecting fails: the directory is
    0700, and the server's peer-credential check would close it anyway."""
    code = f"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect({server!r})
except OSError as e:
    print("refused", type(e).__name__)
    sys.exit(0)
print("connected")
"""
    out = run_as_nobody(code)
    assert out.stdout.startswith("refused PermissionError"), (out.stdout, out.stderr)


async def test_a_peer_of_another_uid_is_closed_even_with_the_path_open(cache_dir: Path) -> None:
    """The second wall: the peer check alone (the directory made reachable on purpose)."""
    import shutil
    import tempfile

    from agent.inference.server import InferenceServer

    socket_dir = Path(tempfile.mkdtemp(prefix="test-peer-check-")) / "sock"
    server = InferenceServer(settings_for(cache_dir), Engines(settings_for(cache_dir)), None)
    await server.start(str(socket_dir / "inference.sock"))
    try:
        os.chmod(socket_dir, 0o755)
        os.chmod(socket_dir.parent, 0o755)
        os.chmod(socket_dir / "inference.sock", 0o666)
        code = f"""
import socket, struct, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect({str(socket_dir / "inference.sock")!r})
hello = json.dumps({{"id": 1, "op": "hello"}}).encode()
try:  # the server may close before the request is even sent
    s.sendall(struct.pack("!II", len(hello), 0) + hello)
    print("answer" if s.recv(100) else "closed")
except (BrokenPipeError, ConnectionResetError):
    print("closed")
"""
        out = await asyncio.to_thread(run_as_nobody, code)
        assert out.stdout.strip() == "closed", (out.stdout, out.stderr[-500:])
    finally:
        await server.close()
        shutil.rmtree(socket_dir.parent, ignore_errors=True)


async def test_options_are_bounded_and_frames_sized_to_real_requests(server: str) -> None:
    client = InferenceClient(server)
    out_of_bounds = [
        ("tts", {"text": "hi", "options": {"length_scale": 40}}),
        ("tts", {"text": "hi", "options": {"volume": 1e30}}),
        ("tts", {"text": "hi", "options": {"speaker_id": 7}}),
        ("tts", {"text": "x" * 5000, "options": {}}),
    ]
    for op, header in out_of_bounds:
        with pytest.raises(InferenceRequestError) as info:
            await client.call(op, header)
        assert info.value.kind == "bad_request", header
    messages = [{"role": "user", "content": "Hi."}]
    for options in ({"max_tokens": 10**8}, {"temperature": 1e9}, {"seed": "x"}, {"n_ctx": 9}):
        with pytest.raises(InferenceRequestError):
            async for _ in client.stream("llm", {"messages": messages, "options": options}):
                pass
    stats, _ = await client.call("stats")
    pid = stats.get("pid") or probe(server)["pid"]
    import psutil

    rss_before = psutil.Process(pid).memory_info().rss
    # a 60 MiB frame is refused from its length alone: nothing is buffered
    for _ in range(4):
        reader, writer = await asyncio.open_unix_connection(socket_path(server))
        writer.write(b"\x00\x00\x00\x10" + (60 << 20).to_bytes(4, "big") + b'{"id":1,"op":"x"}')
        await writer.drain()
        try:
            writer.write(b"\x00" * (8 << 20))
            await writer.drain()
            closed = await asyncio.wait_for(reader.read(), 10) == b""
        except ConnectionError:
            closed = True
        assert closed
        writer.close()
    assert psutil.Process(pid).memory_info().rss - rss_before < 50 << 20
    # and the server still serves
    reply, _ = await client.call("stt", {"beam_size": 1}, speech(SENTENCES[0]).tobytes())
    assert wer(SENTENCES[0], reply["text"]) <= 0.2
    await client.aclose()


async def test_the_http_api_speaks_through_the_inference_process(
    server: str, cache_dir: Path
) -> None:
    """Finding 2: under ``start`` /v1/speak loaded a second Piper in the main process."""
    from agent.http.runtime import speech_engines
    from agent.http.speaker import Speaker

    engines = speech_engines(settings_for(cache_dir, INFERENCE_ADDRESS=server))
    speaker = Speaker(engines, max_audio_s=60)
    parts = await speaker.prepare("Hello from the shared voice.", None)
    pcm = b"".join([c async for c in speaker.stream("acme", parts, 1.2)])
    assert len(pcm) > engines.piper.sample_rate  # > 0.5 s
    assert engines.inference is not None and engines.piper._voice is None  # no local model
