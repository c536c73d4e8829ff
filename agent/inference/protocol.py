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

_LENGTHS = struct.Struct("!II")
# a long chat history or a 10 000-character TTS request is far below these; anything
# bigger is a broken or hostile peer, refused before it is read into memory
MAX_HEADER_BYTES = 4 << 20
MAX_BODY_BYTES = 64 << 20

Header = dict[str, Any]


class ProtocolError(ValueError):
    """A frame that cannot be read: the connection is closed, other connections go on."""


def encode(header: Header, body: bytes = b"") -> bytes:
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) > MAX_HEADER_BYTES or len(body) > MAX_BODY_BYTES:
        raise ProtocolError(f"frame too large: header {len(raw)} B, body {len(body)} B")
    return _LENGTHS.pack(len(raw), len(body)) + raw + body


async def read_frame(reader: asyncio.StreamReader) -> tuple[Header, bytes]:
    """The next frame; ``asyncio.IncompleteReadError`` at a clean end of stream."""
    header_len, body_len = _LENGTHS.unpack(await reader.readexactly(_LENGTHS.size))
    if header_len > MAX_HEADER_BYTES or body_len > MAX_BODY_BYTES:
        raise ProtocolError(f"frame too large: header {header_len} B, body {body_len} B")
    raw = await reader.readexactly(header_len)
    body = await reader.readexactly(body_len) if body_len else b""
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"frame header is not JSON: {e}") from e
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    return header, body


def socket_path(address: str) -> str:
    """``@name`` is Linux's abstract namespace (no file to clean up, nothing on a full or
    read-only disk); anything else is a filesystem path."""
    return "\0" + address[1:] if address.startswith("@") else address
