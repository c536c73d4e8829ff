"""Errors of the clip cache.

::

    CacheError                 base; never escapes to a session (a broken cache is a miss)
    ├── CacheWriteError        the clip could not be stored (disk full, read-only, ...)
    └── ClipCorruptError       a stored clip failed its checksum or format check
"""

from __future__ import annotations


class CacheError(Exception):
    """Base of the clip cache's errors."""


class CacheWriteError(CacheError):
    """Storing a clip failed; the audio was still delivered, only not cached."""


class ClipCorruptError(CacheError):
    """A stored clip is truncated or does not match its checksum."""
