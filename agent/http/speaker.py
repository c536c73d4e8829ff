"""``/v1/speak``'s synthesis: bounded per request, fair across tenants, streamed.

- **Bounded.** The audio a request would produce is predicted from its phonemes before any
  synthesis (``PiperTTS.estimate_seconds``); over ``SPEAK_MAX_AUDIO_S`` the request is
  refused (413). Audio that still runs past the cap is cut there. Text is synthesized in
  units of at most ``MAX_SYNTHESIS_CHARS`` (a sentence, or a piece of a long one), so no
  single inference grows the process.
- **Fair.** Units go to the voice one at a time through :class:`FairTurns`, round-robin
  across tenants: a short request waits for at most one unit of another tenant's long one,
  never for all of it.
- **Where the models are.** The voice is the engines' Piper: the shared inference process
  under ``start`` (the main process loads no model), the serving process under ``serve``.
- **One voice.** Other speeds are variants of the loaded voice sharing its thread; no
  request creates a thread or a model.
- Each unit goes through the clip cache in the tenant's namespace, with espeak-ng behind
  Piper when Piper fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIError, tokenize, tts

from agent.log import logger
from agent.models.engines import Engines
from agent.obs.metrics import SPEAK_TRUNCATED
from cache.tts import CachedTTS
from plugins._common.text import speakable, split_long
from plugins.piper.tts import MAX_SYNTHESIS_CHARS


class AudioTooLong(Exception):
    """The request would produce more audio than one request may."""

    def __init__(self, predicted_s: float, limit_s: float) -> None:
        super().__init__(
            f"the text would speak for about {predicted_s:.0f} s; one request may produce "
            f"at most {limit_s:.0f} s (split the text)"
        )
        self.predicted_s = predicted_s


@dataclass
class FairTurns:
    """One holder at a time; waiters are served round-robin by tenant, FIFO within one."""

    _busy: bool = False
    _queues: dict[str, deque[asyncio.Future[None]]] = field(default_factory=dict)
    _order: deque[str] = field(default_factory=deque)

    @contextlib.asynccontextmanager
    async def turn(self, tenant: str) -> AsyncIterator[None]:
        if self._busy or self._order:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue = self._queues.setdefault(tenant, deque())
            if not queue:
                self._order.append(tenant)
            queue.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed the turn while being cancelled: pass it on
                else:
                    self._forget(tenant, waiter)
                raise
        else:
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def _forget(self, tenant: str, waiter: asyncio.Future[None]) -> None:
        queue = self._queues.get(tenant)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._queues[tenant]
                self._order.remove(tenant)

    def _release(self) -> None:
        while self._order:
            tenant = self._order.popleft()
            queue = self._queues[tenant]
            waiter = queue.popleft()
            if queue:
                self._order.append(tenant)  # its next unit goes to the back of the ring
            else:
                del self._queues[tenant]
            if not waiter.done():
                waiter.set_result(None)  # the turn passes directly: _busy stays True
                return
        self._busy = False


def units(text: str, tokenizer: tokenize.SentenceTokenizer) -> list[str]:
    """What is synthesized one at a time: sentences, long ones cut at clause breaks."""
    out = []
    for sentence in tokenizer.tokenize(speakable(text)) or [text]:
        out += split_long(sentence, MAX_SYNTHESIS_CHARS)
    return out or [text]


class Speaker:
    def __init__(self, engines: Engines, *, max_audio_s: float) -> None:
        self._engines = engines
        self.max_audio_s = max_audio_s
        self._turns = FairTurns()
        self._tokenizer = tokenize.blingfire.SentenceTokenizer()

    @property
    def engines(self) -> Engines:
        return self._engines

    @property
    def sample_rate(self) -> int:
        return self._engines.speech.sample_rate

    async def prepare(self, text: str, speed: float | None) -> list[str]:
        """The units of ``text``; raises :class:`AudioTooLong` before any synthesis when it
        would speak for longer than the cap."""
        predicted = await self._engines.estimate_seconds(text, speed)
        if predicted > self.max_audio_s:
            raise AudioTooLong(predicted, self.max_audio_s)
        return units(text, self._tokenizer)

    def _voice(self, tenant: str, speed: float | None) -> CachedTTS | tts.TTS[Any]:
        inner = self._engines.speech_at(speed)
        store = self._engines.clip_store
        if store is None:
            return inner
        return CachedTTS(
            inner, store, namespace=tenant, shared_sentences=self._engines.shared_sentences()
        )

    async def stream(
        self, tenant: str, parts: list[str], speed: float | None
    ) -> AsyncIterator[bytes]:
        """16-bit mono PCM of ``parts`` at ``sample_rate``, unit by unit, cut at the cap."""
        voice = self._voice(tenant, speed)
        budget = int(self.max_audio_s * self.sample_rate) * 2
        for unit in parts:
            async with self._turns.turn(tenant):
                pcm = await self._unit_pcm(voice, unit)
            if len(pcm) > budget:
                SPEAK_TRUNCATED.inc()
                logger.warning("speak audio cut at the cap", extra={"tenant": tenant})
                yield pcm[: budget - budget % 2]
                return
            budget -= len(pcm)
            yield pcm

    async def _unit_pcm(self, voice: CachedTTS | tts.TTS[Any], unit: str) -> bytes:
        try:
            if isinstance(voice, CachedTTS):
                chunks = [c async for c in voice.sentence_audio(unit, DEFAULT_API_CONNECT_OPTIONS)]
                return b"".join(chunks)
            return await _collect(voice, unit)
        except APIError as e:
            fallback = self._engines.fallback_voice()
            if fallback is None:
                raise
            logger.warning("speak: the voice failed, espeak-ng speaks", extra={"error": str(e)})
            return await _collect(fallback, unit)


async def _collect(voice: tts.TTS[Any], text: str) -> bytes:
    async with voice.synthesize(text) as stream:
        return b"".join([bytes(ev.frame.data) async for ev in stream])


def wav_header(sample_rate: int) -> bytes:
    """A WAV header for a stream of unknown length (sizes 0xFFFFFFFF, as streaming TTS
    servers send; players read to the end of the stream)."""
    import struct

    byte_rate = sample_rate * 2
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, byte_rate, 2, 16)
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
    )
