"""Traces: a voice turn with OTEL_EXPORTER_OTLP_ENDPOINT set delivers a ``voice.turn`` span
with its children to an OTLP/HTTP receiver on loopback (a real exporter, a real turn)."""

from __future__ import annotations

import asyncio
import gzip
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

REPO = Path(__file__).resolve().parents[2]


class OtlpReceiver:
    """Accepts OTLP/HTTP protobuf trace exports and keeps every span."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                self.spans.extend(scope.spans)
        return web.Response(content_type="application/x-protobuf")

    async def start(self) -> OtlpReceiver:
        app = web.Application()
        app.router.add_post("/v1/traces", self.traces)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def attributes(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = (
            value.string_value or value.bool_value or value.double_value or value.int_value
        )
    return out


@pytest.mark.slow
async def test_a_voice_turn_delivers_a_turn_span_with_its_stages(tmp_path: Path) -> None:
    receiver = await OtlpReceiver().start()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            "simulate",
            "--output",
            str(tmp_path / "reply.wav"),
            env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url},
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 300)
        assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        await receiver.close()
    by_id = {span.span_id: span for span in receiver.spans}
    turns = [s for s in receiver.spans if s.name == "voice.turn"]
    assert len(turns) == 1, sorted({s.name for s in receiver.spans})
    turn = turns[0]
    children = {s.name: s for s in receiver.spans if s.parent_span_id == turn.span_id}
    assert {"end_of_turn", "stt.final", "llm.first_token", "tts.first_audio"} <= set(children)
    lookups = [s for s in receiver.spans if s.name == "clip_cache.lookup"]
    assert lookups and all(s.parent_span_id == turn.span_id for s in lookups)
    # one queue-wait child per engine that served the turn: the end-of-turn model and the
    # reply (the final transcript may come from a decode that started before the speech
    # ended, outside the turn's window)
    waits = {
        attributes(s)["inference.engine"]: s
        for s in receiver.spans
        if s.name == "inference.queue_wait" and s.parent_span_id == turn.span_id
    }
    assert {"smart-turn", "llama"} <= set(waits), sorted(waits)
    for wait in waits.values():
        assert attributes(wait)["inference.requests"] >= 1
    children.update({f"queue_wait.{engine}": span for engine, span in waits.items()})
    # the turn runs from the end of speech to the first audible reply, its stages inside it
    assert turn.end_time_unix_nano > turn.start_time_unix_nano
    for child in children.values():
        assert child.start_time_unix_nano >= turn.start_time_unix_nano - 1_000_000, child.name
        assert child.end_time_unix_nano <= turn.end_time_unix_nano + 1_000_000, child.name
    attrs = attributes(turn)
    assert attrs["participant"] == "simulated-user" and attrs["voice.voice_to_voice_ms"] > 0
    # no words of the conversation on our spans
    transcript = "friendly robot"
    assert not any(transcript in repr(attributes(s)).lower() for s in [turn, *children.values()])
    # livekit-agents' own spans went to the same exporter
    assert any(s.name == "agent_session" for s in by_id.values())
