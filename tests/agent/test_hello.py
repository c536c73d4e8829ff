"""The inference process's hello: one typed message, built there and parsed here."""

from __future__ import annotations

import asyncio

import pytest

from agent.models.shared.hello import Hello, VoiceHello
from agent.models.shared.protocol import ProtocolError, encode, read_frame
from plugins.piper.tts import VoiceInfo
from plugins.whisper.models import ResolvedModel


async def test_a_hello_survives_the_wire() -> None:
    hello = Hello(
        pid=42,
        stt=ResolvedModel("/models/tiny.en", "cuda", "float16"),
        voice=VoiceHello("/v/joe.onnx", None, VoiceInfo(22050, 1, 1.0, "en-us")),
        llm="smollm2",
        llm_context_tokens=2048,
    )
    reader = asyncio.StreamReader()
    reader.feed_data(encode(hello.to_header()))
    header, _ = await read_frame(reader)
    assert Hello.from_header(header) == hello
    served_elsewhere = Hello(pid=1, stt=None, voice=None, llm=None, llm_context_tokens=None)
    assert Hello.from_header(served_elsewhere.to_header()) == served_elsewhere


@pytest.mark.parametrize(
    "header",
    [
        {},
        {"pid": "x"},
        {"pid": 1, "stt": {"source": "m", "device": "tpu", "compute_type": "int8"}},
        {"pid": 1, "voice": {"path": "v"}},
        {"pid": 1, "voice": "joe"},
    ],
)
def test_a_malformed_hello_is_a_protocol_error(header: dict) -> None:
    with pytest.raises(ProtocolError, match="malformed hello"):
        Hello.from_header(header)
