"""``CachedTTS``: puts any LiveKit ``tts.TTS[Any]`` behind the clip store, sentence by sentence.

Text is split into sentences with the same tokenizer the session uses. For each sentence:

- hit: the stored PCM is pushed at once; the session plays it out in real-time frames and
  an interruption cuts it like live speech (playout and barge-in belong to the session's
  audio output, not to the TTS);
- miss: the inner TTS synthesizes it, every chunk is forwarded as it arrives, and the clip
  is stored only when the synthesis completed. A cancelled (interrupted) or failed
  synthesis is never stored; a clip that cannot be stored (full disk, read-only volume) is
  logged and counted, and the audio still plays.

The cache key is the normalized sentence plus a canonical hash of the inner TTS's config
(``tts.options`` where the plugin has it, see :func:`tts_identity`) and, for a tenant's
replies, the tenant's ``namespace``: a clip one tenant's session made is never a hit for
another's (a hit is audibly faster, which would tell tenant B what the agent said to tenant
A). The operator's ``shared_sentences`` (prewarm phrases, the apology) stay in the shared
namespace for everyone.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, tokenize, tts, utils

from plugins._common.sentences import SentenceSynthesizeStream
from plugins._common.text import speakable

from .clip_file import Clip
from .errors import CacheWriteError
from .keys import clip_key, config_hash, normalize_text
from .log import logger
from .store import ClipStore

# a "sentence" longer than this (no punctuation in 10 000 characters) is streamed, not kept
MAX_CLIP_PCM_BYTES = 16 * 1024 * 1024
PAUSE_MS = 40


@dataclass(frozen=True, slots=True)
class CacheLookup:
    text: str
    hit: bool
    at: float = 0.0  # wall-clock start of the lookup (turn traces place it)
    seconds: float = 0.0  # how long the store took to answer


def tts_identity(inner: tts.TTS[Any]) -> dict[str, Any]:
    """What identifies the audio ``inner`` produces: its own ``options`` when it offers them
    (our plugins do: voice file digest, speed, noise scales, ...), else what LiveKit's base
    class knows. Put explicit ``config=`` on CachedTTS for a plugin whose settings matter
    beyond these."""
    base: dict[str, Any] = {
        "class": f"{type(inner).__module__}.{type(inner).__qualname__}",
        "model": inner.model,
        "provider": inner.provider,
        "sample_rate": inner.sample_rate,
        "num_channels": inner.num_channels,
    }
    options = getattr(inner, "options", None)
    if isinstance(options, Mapping):
        base.update(options)
    return base


class CachedTTS(tts.TTS[Any]):
    """A streaming TTS that serves sentences from the clip store and fills it on misses."""

    def __init__(
        self,
        inner: tts.TTS[Any],
        store: ClipStore,
        *,
        config: Mapping[str, Any] | None = None,
        sentence_tokenizer: tokenize.SentenceTokenizer | None = None,
        namespace: str | None = None,
        shared_sentences: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=True),
            sample_rate=inner.sample_rate,
            num_channels=inner.num_channels,
        )
        self.inner = inner
        self.store = store
        self._explicit_config = dict(config) if config is not None else None
        self.namespace = namespace
        self._shared = shared_sentences
        self._tokenizer = sentence_tokenizer or tokenize.blingfire.SentenceTokenizer()
        self.lookups: deque[CacheLookup] = deque(maxlen=256)
        self._pending_stores: set[asyncio.Task[None]] = set()

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def sentence_tokenizer(self) -> tokenize.SentenceTokenizer:
        return self._tokenizer

    @property
    def provider(self) -> str:
        return self.inner.provider

    @property
    def config(self) -> dict[str, Any]:
        """What identifies the audio now: read from the inner TTS at every lookup, so
        ``inner.update_options(speed=...)`` gives new keys instead of old clips."""
        if self._explicit_config is not None:
            return self._explicit_config
        return tts_identity(self.inner)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    def key(self, text: str) -> str:
        config = self.config
        if self.namespace and normalize_text(text) not in self._shared:
            config = {**config, "namespace": self.namespace}
        return clip_key(text, config_hash(config))

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> CachedChunkedStream:
        return CachedChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> CachedSynthesizeStream:
        return CachedSynthesizeStream(tts=self, conn_options=conn_options)

    async def sentence_audio(
        self, sentence: str, conn_options: APIConnectOptions
    ) -> AsyncIterator[bytes]:
        """PCM of one sentence: from the store, or synthesized (and then stored)."""
        if not normalize_text(sentence):
            # nothing to pronounce: a short pause, so the stream is not taken for a broken
            # voice (livekit-agents fails a stream that had text and produced no audio)
            yield bytes(2 * self.num_channels * self.sample_rate * PAUSE_MS // 1000)
            return
        key = self.key(sentence)
        started, clock = time.time(), time.perf_counter()
        clip = await asyncio.to_thread(self.store.get, key)
        self.lookups.append(
            CacheLookup(sentence, clip is not None, started, time.perf_counter() - clock)
        )
        if clip is not None:
            yield clip.pcm
            return
        chunks: list[bytes] = []
        size = 0
        rate, channels = self.sample_rate, self.num_channels
        async with self.inner.synthesize(sentence, conn_options=conn_options) as stream:
            async for ev in stream:
                data = bytes(ev.frame.data)
                rate, channels = ev.frame.sample_rate, ev.frame.num_channels
                if size <= MAX_CLIP_PCM_BYTES:
                    chunks.append(data)
                    size += len(data)
                yield data
        # reached only when the synthesis ran to its end: an interruption cancels the
        # consumer, which closes this generator before this point
        if size and size <= MAX_CLIP_PCM_BYTES:
            clip = Clip(pcm=b"".join(chunks), sample_rate=rate, num_channels=channels)
            task = asyncio.create_task(self._store_clip(key, clip))
            self._pending_stores.add(task)
            task.add_done_callback(self._pending_stores.discard)

    async def _store_clip(self, key: str, clip: Clip) -> None:
        try:
            await asyncio.to_thread(self.store.put, key, clip)
        except CacheWriteError:
            pass  # logged and counted by the store; the audio was already delivered
        except Exception:
            logger.exception("storing a clip failed")

    async def wait_stored(self) -> None:
        """Wait for the clips being written (tests, prewarm, shutdown)."""
        while self._pending_stores:
            await asyncio.gather(*self._pending_stores, return_exceptions=True)

    def prewarm(self) -> None:
        # LiveKit's hook for opening connections early; the inner engine decides
        self.inner.prewarm()

    async def fill(self, phrases: Iterable[str]) -> int:
        """Synthesize the phrases that are not cached yet; returns how many were."""
        done = 0
        for phrase in phrases:
            sentences = [
                s for s in self._tokenizer.tokenize(speakable(phrase)) if normalize_text(s)
            ]
            missing = [s for s in sentences if not self.store.contains(self.key(s))]
            for sentence in missing:
                async for _ in self.sentence_audio(sentence, DEFAULT_API_CONNECT_OPTIONS):
                    pass
            done += bool(missing)
        await self.wait_stored()
        return done

    async def aclose(self) -> None:
        await self.wait_stored()
        await self.inner.aclose()


class CachedChunkedStream(tts.ChunkedStream):
    def __init__(self, *, tts: CachedTTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._cached = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=self._cached.sample_rate,
            num_channels=self._cached.num_channels,
            mime_type="audio/pcm",
        )
        # nothing to pronounce: one empty sentence, answered with a short pause
        sentences = self._cached.sentence_tokenizer.tokenize(speakable(self.input_text))
        for sentence in sentences or [""]:
            async for pcm in self._cached.sentence_audio(sentence, self._conn_options):
                output_emitter.push(pcm)
        output_emitter.flush()


class CachedSynthesizeStream(SentenceSynthesizeStream):
    def __init__(self, *, tts: CachedTTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._cached = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        request_id = utils.shortuuid()
        output_emitter.initialize(
            request_id=request_id,
            sample_rate=self._cached.sample_rate,
            num_channels=self._cached.num_channels,
            mime_type="audio/pcm",
            stream=True,
        )
        output_emitter.start_segment(segment_id=request_id)
        async for sentence in self.input_sentences(self._cached.sentence_tokenizer):
            async for pcm in self._cached.sentence_audio(sentence, self._conn_options):
                output_emitter.push(pcm)
        output_emitter.end_segment()
