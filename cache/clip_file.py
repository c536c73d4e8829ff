"""The on-disk format of one clip: PCM between a header and a checksummed trailer.

::

    header  "LVAC" | version u8 | sample_rate u32 | channels u16
    body    int16 little-endian PCM, interleaved
    trailer pcm_bytes u64 | sha256(pcm) 32 bytes | "CAVL"

The trailer is written last, so a file cut short anywhere (a killed writer, a full disk) fails
the check; the file is only renamed into place once complete anyway, and the check catches
what happens to it later (bit rot, a truncating copy).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import BinaryIO

from .errors import ClipCorruptError

MAGIC, END_MAGIC, VERSION = b"LVAC", b"CAVL", 1
_HEADER = struct.Struct("<4sBIH")
_TRAILER = struct.Struct("<Q32s4s")


@dataclass(frozen=True, slots=True)
class Clip:
    pcm: bytes
    sample_rate: int
    num_channels: int

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.num_channels / self.sample_rate


class ClipFileWriter:
    """Streams PCM into an open file and seals it with the trailer."""

    def __init__(self, f: BinaryIO, sample_rate: int, num_channels: int) -> None:
        self._f = f
        self._sha = hashlib.sha256()
        self.pcm_bytes = 0
        f.write(_HEADER.pack(MAGIC, VERSION, sample_rate, num_channels))

    def write(self, pcm: bytes) -> None:
        self._f.write(pcm)
        self._sha.update(pcm)
        self.pcm_bytes += len(pcm)

    def seal(self) -> None:
        self._f.write(_TRAILER.pack(self.pcm_bytes, self._sha.digest(), END_MAGIC))


def parse_clip(data: bytes) -> Clip:
    """Check and decode a whole clip file; raises ``ClipCorruptError``."""
    if len(data) < _HEADER.size + _TRAILER.size:
        raise ClipCorruptError("clip file is shorter than its header and trailer")
    magic, version, rate, channels = _HEADER.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION:
        raise ClipCorruptError("not a clip file of this version")
    length, digest, end = _TRAILER.unpack_from(data, len(data) - _TRAILER.size)
    pcm = data[_HEADER.size : len(data) - _TRAILER.size]
    if end != END_MAGIC or length != len(pcm):
        raise ClipCorruptError("clip file is truncated")
    if hashlib.sha256(pcm).digest() != digest:
        raise ClipCorruptError("clip checksum mismatch")
    if rate <= 0 or channels <= 0 or length % (2 * channels):
        raise ClipCorruptError("clip header is inconsistent")
    return Clip(pcm=pcm, sample_rate=rate, num_channels=channels)


def clip_file_size(pcm_bytes: int) -> int:
    return _HEADER.size + pcm_bytes + _TRAILER.size
