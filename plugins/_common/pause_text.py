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
        # finals already sent in this turn: the session flushes the STT during a long pause
        # without ending the turn, and the words before that flush still belong to it
        self._earlier = ""

    def publish(self, text: str) -> None:
        """The STT's text since its last flush, decoded during the current pause."""
        self._text = f"{self._earlier} {text}".strip()
        self._ready.set()

    def finalized(self, text: str) -> None:
        """The STT flushed with this final; the turn may go on after it. Until the user
        speaks again, the turn's words are all the finals so far."""
        self._earlier = f"{self._earlier} {text}".strip()
        self._text = self._earlier or None
        if self._text is None:
            self._ready.clear()
        else:
            self._ready.set()

    def new_turn(self) -> None:
        """The turn ended (the detector was flushed): nothing said so far belongs to the next."""
        self._earlier = ""
        self.invalidate()

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
