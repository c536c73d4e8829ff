"""Rooms belong to tenants: which room names exist, and which of them a tenant may enter.

A room name is 1-128 characters of letters, digits and ``-_.:@``; anything else (newlines,
``/..``, bidi controls, spaces) is refused before it reaches LiveKit or a log line.

By default a tenant owns the rooms named ``<tenant>-<anything>``. A token may replace that
with a ``rooms`` claim: a list of glob patterns (``fnmatch``, case-sensitive), e.g.
``["acme-*", "shared-lobby"]``, which can narrow or extend the tenant's rooms.

One trap of the prefix rule: with tenants ``acme`` and ``acme-eu``, the room
``acme-eu-1`` matches ``acme-*``. Under the default rule a room that carries the prefix of a
*longer* tenant this worker knows (from ``TENANT_LIMITS``) belongs to that tenant only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any

from .errors import InvalidRoomError, InvalidTokenError, RoomNotAllowedError

ROOM_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
# a pattern may use the glob characters on top of the room characters
_ROOM_PATTERN = re.compile(r"[A-Za-z0-9_.:@*?\[\]!-]{1,128}")
MAX_ROOM_PATTERNS = 32


def check_room_name(room: object) -> str:
    """``room`` if it is a valid room name; raises ``InvalidRoomError`` (400) otherwise."""
    if not isinstance(room, str) or not ROOM_NAME.fullmatch(room):
        raise InvalidRoomError("room must be 1-128 characters of letters, digits and - _ . : @")
    return room


def parse_rooms_claim(value: Any) -> tuple[str, ...] | None:
    """The token's ``rooms`` claim as patterns (None when absent); a malformed claim makes
    the whole token invalid rather than silently widening or dropping it."""
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_ROOM_PATTERNS
        or not all(isinstance(p, str) and _ROOM_PATTERN.fullmatch(p) for p in value)
    ):
        raise InvalidTokenError(
            f"rooms claim must be a list of 1 to {MAX_ROOM_PATTERNS} room name patterns"
        )
    return tuple(value)


def room_allowed(
    tenant: str,
    room: str,
    patterns: Sequence[str] | None = None,
    known_tenants: Iterable[str] = (),
) -> bool:
    """Whether ``tenant`` may send the agent into ``room``."""
    if patterns is not None:
        return any(fnmatchcase(room, p) for p in patterns)
    if not room.startswith(f"{tenant}-") or len(room) == len(tenant) + 1:
        return False
    # the room is the tenant's unless a longer tenant name claims the same prefix
    return not any(
        other != tenant and other.startswith(f"{tenant}-") and room.startswith(f"{other}-")
        for other in known_tenants
    )


def check_room(
    tenant: str,
    room: object,
    patterns: Sequence[str] | None = None,
    known_tenants: Iterable[str] = (),
) -> str:
    """The valid room name ``room`` if ``tenant`` may use it; raises ``InvalidRoomError``
    (400) or ``RoomNotAllowedError`` (403)."""
    name = check_room_name(room)
    if not room_allowed(tenant, name, patterns, known_tenants):
        raise RoomNotAllowedError(f"room {name!r} does not belong to tenant {tenant!r}")
    return name
