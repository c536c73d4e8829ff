"""A sentence tokenizer that lets the first chunk of a reply go early.

TTS engines speak whole sentences best, but waiting for the first full stop of an LLM
reply costs time before the agent says anything (and LiveKit's tokenizer also merges a
short first sentence into the next one). This wrapper cuts the *first* chunk at the first
clause break (``,`` ``;`` ``:`` ``—``, sentence ends) once it has ``min_words`` words, or
after ``max_words`` words, and hands everything after it to the wrapped tokenizer unchanged.
"""

from __future__ import annotations

import asyncio
import re

from livekit.agents import tokenize, utils
from livekit.agents.tokenize.tokenizer import TokenData

_BREAK = re.compile(r"[,;:!?.\u2014\u2013]$")


def find_first_cut(text: str, min_words: int, max_words: int) -> int | None:
    """Index at which the first chunk ends, or None when more text is needed. Only words
    followed by whitespace count as complete."""
    count = 0
    for match in re.finditer(r"\S+(?=\s)", text):
        count += 1
        if count >= min_words and _BREAK.search(match.group()):
            return match.end()
        if count >= max_words:
            return match.end()
    return None


class EarlyFirstChunkTokenizer(tokenize.SentenceTokenizer):
    def __init__(
        self, inner: tokenize.SentenceTokenizer, *, min_words: int = 3, max_words: int = 8
    ) -> None:
        if not 1 <= min_words <= max_words:
            raise ValueError("need 1 <= min_words <= max_words")
        self._inner = inner
        self.min_words = min_words
        self.max_words = max_words

    def tokenize(self, text: str, *, language: str | None = None) -> list[str]:
        cut = find_first_cut(text, self.min_words, self.max_words)
        if cut is None:
            return self._inner.tokenize(text, language=language)
        return [text[:cut].strip(), *self._inner.tokenize(text[cut:], language=language)]

    def stream(self, *, language: str | None = None) -> EarlyFirstChunkStream:
        return EarlyFirstChunkStream(self, self._inner.stream(language=language))


class EarlyFirstChunkStream(tokenize.SentenceStream):
    def __init__(self, owner: EarlyFirstChunkTokenizer, inner: tokenize.SentenceStream) -> None:
        super().__init__()
        self._owner = owner
        self._inner = inner
        self._head = ""
        self._first_done = False
        self._forward = asyncio.create_task(self._forward_inner())

    async def _forward_inner(self) -> None:
        try:
            async for ev in self._inner:
                self._event_ch.send_nowait(ev)
        finally:
            self._do_close()

    def _release_head(self) -> None:
        self._first_done = True
        if self._head:
            self._inner.push_text(self._head)
            self._head = ""

    def push_text(self, text: str) -> None:
        self._check_not_closed()
        if self._first_done:
            self._inner.push_text(text)
            return
        self._head += text
        cut = find_first_cut(self._head, self._owner.min_words, self._owner.max_words)
        if cut is not None:
            first, self._head = self._head[:cut].strip(), self._head[cut:].lstrip()
            self._event_ch.send_nowait(TokenData(segment_id=utils.shortuuid(), token=first))
            self._release_head()

    def flush(self) -> None:
        self._release_head()
        self._inner.flush()
        # the next segment (a new reply on this stream) may go early again
        self._first_done = False

    def end_input(self) -> None:
        self._release_head()
        self._inner.end_input()

    async def aclose(self) -> None:
        await self._inner.aclose()
        await utils.aio.cancel_and_wait(self._forward)
        self._do_close()
