"""The wire format between job processes and the shared inference process.

One Unix stream socket per job process, requests multiplexed by id. A frame is two
big-endian uint32 lengths, a JSON header and a raw body:

    [header length][body length][header: JSON object][body: bytes]

Audio travels as raw little-endian float32 (STT, turn detector) or int16 PCM (TTS) in the
body, never inside JSON. A request header is ``{"id": int, "op": str, ...}``; the server
answers with frames carrying the same id: ``{"id", "delta": ...}`` pieces for streaming
operations, then one ``{"id", "end": true, ...}`` or ``{"id", "error": ..., "kind": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from agent import json_input

_LENGTHS = struct.Struct("!II")
# Sized to the largest legitimate frame, so a hostile peer cannot make the reader buffer
# more. Requests: a chat history within the LLM's context (headers), 30 s of 16 kHz float32
# audio (1.92 MB, bodies). Replies: the PCM of the longest TTS request the server accepts.
MAX_HEADER_BYTES = 1 << 20
MAX_REQUEST_BODY_BYTES = 2 << 20
MAX_REPLY_BODY_BYTES = 32 << 20

Header = dict[str, Any]


class ProtocolError(ValueError):
    """A frame that cannot be read: the connection is closed, other connections go on."""


def encode(header: Header, body: bytes = b"") -> bytes:
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) > MAX_HEADER_BYTES or len(body) > MAX_REPLY_BODY_BYTES:
        raise ProtocolError(f"frame too large: header {len(raw)} B, body {len(body)} B")
    return _LENGTHS.pack(len(raw), len(body)) + raw + body


async def read_frame(
    reader: asyncio.StreamReader, *, max_body: int = MAX_REPLY_BODY_BYTES
) -> tuple[Header, bytes]:
    """The next frame; ``asyncio.IncompleteReadError`` at a clean end of stream. The
    server reads requests with ``max_body=MAX_REQUEST_BODY_BYTES``."""
    header_len, body_len = _LENGTHS.unpack(await reader.readexactly(_LENGTHS.size))
    if header_len > MAX_HEADER_BYTES or body_len > max_body:
        raise ProtocolError(f"frame too large: header {header_len} B, body {body_len} B")
    raw = await reader.readexactly(header_len)
    body = await reader.readexactly(body_len) if body_len else b""
    try:
        header = json_input.loads(raw, what="frame header")
    except json_input.JsonInputError as e:
        raise ProtocolError(str(e)) from e
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    return header, body


def socket_path(address: str) -> str:
    """The filesystem path of the socket. Abstract-namespace names (``@name``) are refused:
    they carry no permissions, so any local user could connect."""
    if not address or address.startswith("@"):
        raise ValueError("the inference address must be a filesystem path (no @name)")
    return address
