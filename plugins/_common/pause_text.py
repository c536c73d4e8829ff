"""The user's words at their latest pause, handed from one session's STT to its turn detector.

The STT stream decodes as soon as the user pauses (plugins/whisper/stream.py); the end-of-
turn detector, asked a moment later whether the turn is over, reads that text next to the
audio (plugins/smart_turn/text.py). One ``PauseText`` per session connects the two; it holds
only text that covers every voiced sample so far, so the detector never judges stale words.
"""

from __future__ import annotations

import asyncio


class PauseText:
    def __init__(self) -> None:
        self._text: str | None = None
        self._ready = asyncio.Event()

    def publish(self, text: str) -> None:
        """The whole turn so far, decoded during the current pause."""
        self._text = text
        self._ready.set()

    def invalidate(self) -> None:
        """The user spoke again (or the turn ended): the last text no longer covers it."""
        self._text = None
        self._ready.clear()

    @property
    def text(self) -> str | None:
        return self._text

    async def wait(self, within: float) -> str | None:
        """The current pause's text, waiting up to ``within`` seconds for its decode."""
        if self._text is None and within > 0:
            try:
                await asyncio.wait_for(self._ready.wait(), within)
            except TimeoutError:
                return None
        return self._text
