"""Structured logs of a real session: JSON, bound context on every record, no secrets."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
from collections.abc import Iterator

import pytest

from agent.obs import logs
from agent.session.voice_manager import SessionIO, VoiceManager
from agent.sim.io import PacedAudioInput, RecordingAudioOutput
from tests.audio_fixtures import speak, trim_silence
from tests.auth.tokens import hs256

SECRET = "sk-live-0123456789abcdef"
QUESTION = "What is the capital of France?"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buf = io.StringIO()
    logs.configure(level="DEBUG", secrets=[SECRET], stream=buf)
    try:
        yield buf
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved_handlers:
            root.addHandler(h)
        root.setLevel(saved_level)


async def run_session(engines) -> None:
    logs.bind(room="room-7", job_id="AJ_test", tenant="acme")
    log = logging.getLogger("agent.test")
    token = hs256()
    log.info("dispatch admitted", extra={"token": token, "note": f"key={SECRET}"})
    log.warning("upstream said: Authorization: Bearer %s", token)
    manager = VoiceManager(engines, instructions="Answer in one short sentence.")
    mic, speaker = PacedAudioInput(), RecordingAudioOutput(playout_speed=4)  # heard 4x faster
    await manager.attach("alice", SessionIO(mic, speaker))
    await mic.play_silence(0.3)
    await mic.play(trim_silence(speak(QUESTION, rate=16000)), 16000)
    tail = asyncio.create_task(mic.play_silence(30))
    await asyncio.wait_for(speaker.wait_for_segments(1), 60)
    await asyncio.wait_for(speaker.wait_for_playout(), 60)
    tail.cancel()
    await manager.aclose()


@pytest.mark.slow
async def test_session_logs_are_json_with_context_and_no_secrets(
    engines, captured: io.StringIO
) -> None:
    # a job's context, as the entrypoint binds it, isolated from the other tests
    await asyncio.create_task(run_session(engines), context=contextvars.copy_context())
    lines = [line for line in captured.getvalue().splitlines() if line.strip()]
    assert len(lines) > 10
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for r in records:
        assert {"event", "level", "logger", "timestamp"} <= set(r), r
        if r["logger"] == "asyncio":  # event-loop bookkeeping of helper threads, not the job
            continue
        for key in ("room", "job_id", "tenant"):
            assert r.get(key) == {"room": "room-7", "job_id": "AJ_test", "tenant": "acme"}[key], r
    session = [r for r in records if r.get("participant")]
    assert any(r["logger"].startswith("livekit") for r in session)  # LiveKit's own records
    assert any(r["event"] == "session attached" for r in session)
    text = captured.getvalue()
    assert SECRET not in text
    assert "eyJ" not in text  # no JWT, in a field or in a message
    assert "capital of France" not in text  # transcripts are dropped by default


def test_livekit_pii_fields_and_unusual_jwts_are_redacted(captured: io.StringIO) -> None:
    """Finding 7: livekit-agents' ``lk.pii.*`` fields and JWTs whose header is not the
    usual ``{"`` (eyJ...) reached the logs."""
    import base64

    import jwt

    log = logging.getLogger("livekit.agents")
    said = "my card number is 4471 0000 1234 5678"
    log.warning("skipping user input", extra={"lk.pii.user_input": said})
    log.debug("received user transcript", extra={"lk.pii.user_transcript": said})
    # a valid token whose header starts with a space: base64 "eyAi..." / "IHsi..."
    body = jwt.encode(
        {"tenant": "acme", "exp": 9999999999}, SECRET + "-signing-key-0123", algorithm="HS256"
    )
    _, payload, signature = body.split(".")
    odd_header = base64.urlsafe_b64encode(b' {"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    odd = f"{odd_header}.{payload}.{signature}"
    assert not odd.startswith("eyJ")
    log.error("upstream rejected %s", odd)
    log.info("token in a field", extra={"detail": f"got {odd} back"})
    text = captured.getvalue()
    assert said not in text and "4471" not in text
    assert odd not in text and signature not in text
    assert text.count("***") >= 2
    # ordinary dotted names are left alone
    logging.getLogger("agent").info("loaded", extra={"model": "smart-turn.v3.onnx"})
    assert "smart-turn.v3.onnx" in captured.getvalue()
