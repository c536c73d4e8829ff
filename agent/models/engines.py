"""The engines, loaded once per process, and the ``AgentSession`` built from them.

A worker loads them in its setup function (once per job process, before any job arrives);
every session of that process shares them. Per-session state (VAD streams, turn-detector
streams, noise filters) is created per session, never shared.

With ``Engines.remote`` (``INFERENCE_MODE=shared``) the models stay in the shared inference
process (agent/inference/) and the same plugins are built on its client: this process loads
no STT, TTS, turn-detector or LLM model.
"""

from __future__ import annotations

import asyncio
import atexit
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livekit.agents import llm, tokenize, tts

from agent.conversation.budget import ContextBudget, estimate_tokens
from agent.conversation.memory import MemoryStore, memory_store
from agent.conversation.recall import SessionMemory
from agent.log import logger
from agent.models.endpoints import (
    SpeechEndpoint,
    speech_client,
    speech_endpoint,
    transcription_endpoint,
)
from agent.models.resilience import CircuitBreaker, ResilientLLM
from agent.models.voices import UnknownVoice
from agent.obs.metrics import FALLBACKS, INFERENCE_QUEUE_DELAY, INFERENCE_QUEUED
from agent.settings import Settings
from cache.keys import normalize_text
from cache.store import ClipStore
from cache.tts import CachedTTS
from plugins._common.executor import QUEUE_DELAYS
from plugins._common.first_chunk import EarlyFirstChunkTokenizer
from plugins._common.text import speakable
from plugins.espeak import EspeakTTS
from plugins.llama import LlamaLLM, openai_compatible
from plugins.piper import PiperTTS
from plugins.smart_turn import (
    HybridTurnOptions,
    SmartTurnModel,
    TurnBatcher,
)
from plugins.smart_turn.detector import TurnPredictor
from plugins.smart_turn.text import TextTurnScorer
from plugins.whisper import WhisperSTT
from plugins.whisper.models import check_whisper_language, packaged_base

if TYPE_CHECKING:
    from agent.models.shared.client import InferenceClient
    from agent.models.shared.hello import Hello
    from agent.models.voice_library import VoiceLibrary

# livekit-agents' default (0.5 s) makes barge-in wait half a second of speech; 0.3 s still
# ignores coughs and clicks. While the agent speaks this is the VAD's own minimum speech, so
# the VAD's start of speech is the barge-in trigger (agent/session/barge_in_vad.py).
BARGE_IN_MIN_SPEECH_S = 0.3
# characters per second of speech assumed for a speech endpoint's clips (plain English
# speaks at ~14-16 at rate 1.0; the higher figure errs short, as Piper's estimate does)
ENDPOINT_CHARS_PER_SECOND = 18.0
# the window assumed for an LLM_BASE_URL endpoint when LLM_CONTEXT_TOKENS does not say
ENDPOINT_CONTEXT_TOKENS = 8192

# the Engines class has properties named ``tts`` and ``llm``: inside it those names are
# not the modules
AnyTTS = tts.TTS[Any]
AnyLLM = llm.LLM[Any]


def turn_options(settings: Settings) -> HybridTurnOptions:
    return HybridTurnOptions(
        threshold=settings.turn_threshold,
        decision_pause=settings.turn_decision_pause_s,
        silence_timeout=settings.turn_silence_timeout_s,
        min_speech=settings.turn_min_speech_s,
        text_weight=settings.turn_text_weight,
        text_confirm=settings.turn_text_confirm,
        text_confirm_pause=settings.turn_text_confirm_pause_s,
        text_confirm_min_audio=settings.turn_text_confirm_min_audio,
        early_pause=settings.turn_early_pause_s,
    )


def build_llm(
    settings: Settings, inference: InferenceClient | None = None, hello: Hello | None = None
) -> AnyLLM:
    """The embedded llama.cpp model (here, or in the shared inference process), or an
    OpenAI-compatible endpoint when one is set."""
    if settings.llm_base_url:
        return openai_compatible(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key or "unused",
            temperature=settings.llm_temperature,
            timeout_s=settings.llm_timeout_s,
        )
    if inference is not None and hello is not None and hello.llm:
        from agent.models.shared.engines import SharedGenerator

        return LlamaLLM(
            generator=SharedGenerator(inference),
            model_name=hello.llm,
            context_tokens=hello.llm_context_tokens,
            temperature=settings.llm_temperature,
            max_tokens=settings.llm_max_tokens,
            seed=None if settings.llm_seed < 0 else settings.llm_seed,
        )
    return LlamaLLM(
        cache_dir=settings.cache_path,
        n_threads=settings.llm_threads or None,
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,
        seed=None if settings.llm_seed < 0 else settings.llm_seed,
    )


def open_clip_store(settings: Settings) -> ClipStore | None:
    """The clip store under CACHE_PATH/clips, or None when CACHE_MAX_BYTES is 0 or the
    directory cannot be used (read-only or full volume): the voice then works uncached
    rather than the worker failing to start."""
    if settings.cache_max_bytes == 0:
        return None
    try:
        return ClipStore(settings.cache_path / "clips", max_bytes=settings.cache_max_bytes)
    except (OSError, sqlite3.Error) as e:
        logger.error("clip cache off: CACHE_PATH is not usable", extra={"error": str(e)})
        return None


def process_language(settings: Settings) -> str | None:
    """STT_LANGUAGE as the process's STT takes it (None: detected per utterance)."""
    language = settings.stt_language.strip().lower()
    return None if language in ("", "auto") else language


def stt_model_source(settings: Settings) -> str | None:
    """STT_MODEL as faster-whisper takes it: ``base`` is the packaged multilingual model
    that ``download-files`` placed under CACHE_PATH."""
    if settings.stt_model == "base":
        return str(packaged_base(settings.cache_path / "models" / "whisper"))
    return settings.stt_model or None


def sentence_tokenizer(settings: Settings) -> tokenize.SentenceTokenizer:
    """Sentences for the voice; the first chunk of a reply may go after a few words."""
    base = tokenize.blingfire.SentenceTokenizer()
    if settings.tts_first_chunk_words <= 0:
        return base
    return EarlyFirstChunkTokenizer(base, min_words=1, max_words=settings.tts_first_chunk_words)


def cached(
    inner: AnyTTS,
    store: ClipStore | None,
    tokenizer: tokenize.SentenceTokenizer | None = None,
    *,
    namespace: str | None = None,
    shared_sentences: frozenset[str] = frozenset(),
) -> AnyTTS:
    if store is None:
        return inner
    return CachedTTS(
        inner,
        store,
        sentence_tokenizer=tokenizer,
        namespace=namespace,
        shared_sentences=shared_sentences,
    )


_UNSET: Any = object()


def _count_tts_fallback(ev: Any) -> None:
    if not ev.available:
        FALLBACKS.labels("tts", "engine_failed").inc()
        logger.warning("TTS fallback: the next voice takes over", extra={"failed": ev.tts.label})


class VoiceChain(tts.FallbackAdapter):
    """A session's voice and the voice that takes over when it fails."""

    def __init__(self, primary: AnyTTS, fallback: AnyTTS) -> None:
        super().__init__([primary, fallback], sample_rate=primary.sample_rate)
        self.primary = primary


_TEXT_SCORERS: dict[Path, TextTurnScorer] = {}
_TEXT_SCORERS_LOCK = threading.Lock()


def shared_text_scorer(path: Path) -> TextTurnScorer:
    """One text turn scorer per model file and process. Jobs run as threads of one process
    (JOB_EXECUTOR=thread) each build their own Engines; the scorer runs its model on a
    thread of its own, so they can share it instead of loading a copy each (~100 MB)."""
    with _TEXT_SCORERS_LOCK:
        scorer = _TEXT_SCORERS.get(path)
        if scorer is None:
            if not _TEXT_SCORERS:
                # freed before the interpreter tears its modules down (llama.cpp's own
                # finalizer fails once they are gone)
                atexit.register(_close_text_scorers)
            scorer = _TEXT_SCORERS[path] = TextTurnScorer(path)
        return scorer


def _close_text_scorers() -> None:
    with _TEXT_SCORERS_LOCK:
        for scorer in _TEXT_SCORERS.values():
            scorer.close()
        _TEXT_SCORERS.clear()


class Engines:
    """The models of this process, shared by every session of it.

    Each engine is loaded on first use; :meth:`load` (the worker's setup, with
    ``PRELOAD_MODELS``) loads them all up front so no session waits. A text-only session
    touches only the LLM, so a process that serves only those loads no audio model.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        stt: WhisperSTT | None = None,
        piper: PiperTTS | None = None,
        llm: AnyLLM | None = None,
        turn_model: SmartTurnModel | None = None,
        clip_store: ClipStore | None = _UNSET,
        inference: InferenceClient | None = None,
        hello: Hello | None = None,
    ) -> None:
        self.settings = settings
        self.inference, self._hello = inference, hello
        self._stt, self._piper, self._llm, self._turn_model = stt, piper, llm, turn_model
        self.clip_store = open_clip_store(settings) if clip_store is _UNSET else clip_store
        self._tts: AnyTTS | None = None
        self._speech: SpeechEndpoint | None = None
        self._espeak_tts: EspeakTTS | None = None
        self._espeak_missing = False
        self._prewarm_task: asyncio.Task[int] | None = None
        self._queue_task: asyncio.Task[None] | None = None
        self._turn_batcher: TurnPredictor | None = None
        self._turn_text: TextTurnScorer | None = None
        self._shared_sentences: frozenset[str] | None = None
        self._memory_store: MemoryStore | None = None
        self._voices: VoiceLibrary | None = None

    @classmethod
    def load(cls, settings: Settings) -> Engines:
        """Load every model; raises the plugin's error (naming what to run) when one is
        missing, so a job process never starts half-equipped."""
        engines = cls(settings)
        engines.preload()
        return engines

    @classmethod
    def remote(cls, settings: Settings, address: str | None = None) -> Engines:
        """Engines served by the shared inference process at ``address`` (default
        ``INFERENCE_ADDRESS``); waits for it to answer, up to INFERENCE_START_TIMEOUT_S."""
        from agent.models.shared.client import InferenceClient, wait_ready
        from agent.models.shared.hello import Hello

        address = address or settings.inference_address
        hello = Hello.from_header(wait_ready(address, settings.inference_start_timeout_s))
        return cls(settings, inference=InferenceClient(address), hello=hello)

    def preload(self) -> None:
        _ = self.stt, self.speech, self.llm, self.turn_batcher, self.tts

    def loaded(self) -> set[str]:
        """Which engines exist in this process (for tests and /readyz)."""
        found = {
            "stt": self._stt,
            "tts": self._piper or self._speech,
            "llm": self._llm,
            "turn": self._turn_batcher,
        }
        return {name for name, engine in found.items() if engine is not None}

    def speech_models_here(self) -> set[str]:
        """The speech models whose weights are in this process (not the inference
        process's, not a serving engine's)."""
        here = set()
        if self._stt is not None and self._stt.whisper_model is not None:
            here.add("stt")
        if self._piper is not None and self._piper.piper_voice is not None:
            here.add("tts")
        return here

    @property
    def stt(self) -> WhisperSTT:
        if self._stt is None and self.settings.stt_base_url:
            s = self.settings
            self._stt = WhisperSTT(
                decoder=transcription_endpoint(s),
                beam_size=s.stt_beam_size,
                language=process_language(s),
            )
        if self._stt is None and self.inference is not None:
            from agent.models.shared.engines import RemoteDecoder

            s = self.settings
            if self._hello is None or self._hello.stt is None:
                raise RuntimeError("the inference process serves no STT: set STT_BASE_URL here too")
            self._stt = WhisperSTT(
                decoder=RemoteDecoder(self.inference, self._hello.stt),
                beam_size=s.stt_beam_size,
                language=process_language(s),
            )
        if self._stt is None:
            s = self.settings
            self._stt = WhisperSTT(
                model=stt_model_source(s),
                device=s.stt_device,
                compute_type=s.stt_compute_type,  # type: ignore[arg-type]
                beam_size=s.stt_beam_size,
                language=process_language(s),
                min_window_s=s.stt_min_window_s or None,
                download_root=s.cache_path / "models" / "whisper",
            )
        return self._stt

    @property
    def piper(self) -> PiperTTS:
        if self._piper is None and self.inference is not None:
            from agent.models.shared.engines import RemoteVoice

            if self._hello is None or self._hello.voice is None:
                raise RuntimeError(
                    "the inference process serves no voice: set TTS_BASE_URL here too"
                )
            voice = RemoteVoice(self.inference, self._hello.voice)
            self._piper = PiperTTS(
                model_path=voice.model_path,
                config_path=voice.config_path,
                speed=self.settings.tts_speed,
                sentence_tokenizer=sentence_tokenizer(self.settings),
                use_cuda=False,
                synthesizer=voice,
            )
        if self._piper is None:
            s = self.settings
            self._piper = PiperTTS(
                model_path=s.tts_voice or None,
                speed=s.tts_speed,
                sentence_tokenizer=sentence_tokenizer(s),
                use_cuda="auto" if s.tts_device == "auto" else s.tts_device == "cuda",
            )
        return self._piper

    @property
    def speech(self) -> AnyTTS:
        """The voice engine: Piper (here or in the inference process), or the speech
        endpoint at TTS_BASE_URL."""
        if not self.settings.tts_base_url:
            return self.piper
        if self._speech is None:
            self._speech = speech_endpoint(self.settings, speech_client(self.settings))
        return self._speech

    def speech_at(self, speed: float | None) -> AnyTTS:
        """The voice engine at another speaking rate, sharing the loaded voice (or the
        endpoint's connections)."""
        if speed is None:
            return self.speech
        if self.settings.tts_base_url:
            base = self.speech
            assert isinstance(base, SpeechEndpoint)
            return speech_endpoint(self.settings, base.client, speed)
        return self.piper.with_speed(speed)

    async def estimate_seconds(self, text: str, speed: float | None = None) -> float:
        """How long ``text`` will speak: Piper counts its phonemes; for an endpoint, from
        its characters (at a brisk rate, so the estimate errs on the short side)."""
        if not self.settings.tts_base_url:
            return await self.piper.estimate_seconds(text, speed)
        rate = speed if speed is not None else self.settings.tts_speed
        return len(speakable(text)) / (ENDPOINT_CHARS_PER_SECOND * rate)

    @property
    def tts(self) -> AnyTTS:
        """The shared voice behind the clip cache."""
        if self._tts is None:
            self._tts = cached(self.speech, self.clip_store, sentence_tokenizer(self.settings))
        return self._tts

    async def release_voice(self, voice: AnyTTS) -> None:
        """End a chain made by ``voice()``: a fallback adapter subscribes to the shared
        voices and would otherwise keep itself, and its session, alive."""
        if isinstance(voice, tts.FallbackAdapter):
            await voice.aclose()

    def shared_sentences(self) -> frozenset[str]:
        """The operator's prewarm phrases, as the clip cache keys them: the only clips that
        every tenant shares."""
        if self._shared_sentences is None:
            tokenizer = sentence_tokenizer(self.settings)
            self._shared_sentences = frozenset(
                normalize_text(s)
                for phrase in self.settings.prewarm_phrases()
                for s in tokenizer.tokenize(speakable(phrase))
                if normalize_text(s)
            )
        return self._shared_sentences

    @property
    def voices(self) -> VoiceLibrary:
        """The voices sessions may pick (``tts.voice``), and the manager of their models."""
        if self._voices is None:
            from agent.models.voice_library import VoiceLibrary

            hello = self._hello.voice if self._hello is not None else None
            self._voices = VoiceLibrary(
                self.settings,
                default_model=Path(hello.path) if hello is not None else None,
                default_config=Path(hello.config_path)
                if hello is not None and hello.config_path
                else None,
                inference=self.inference,
            )
        return self._voices

    def close_voices(self) -> None:
        """Unload the model manager's voices (the pinned default stays with the process)."""
        if self._voices is not None:
            self._voices.close()

    def voice(
        self,
        speed: float | None,
        *,
        namespace: str | None = None,
        voice_id: str | None = None,
    ) -> AnyTTS:
        """The voice ``voice_id`` (None: the worker's) at ``speed`` (None: the configured
        one), behind the clip cache in ``namespace`` (the tenant; None: the shared one),
        with espeak-ng behind it when the voice fails (one chain per session: the adapter
        keeps per-instance availability). Raises ``UnknownVoice``."""
        if voice_id is not None and (
            self.settings.tts_base_url or not self.voices.is_default(voice_id)
        ):
            return self._other_voice(voice_id, speed, namespace)
        if speed is None and namespace is None:
            primary = self.tts
        else:
            primary = cached(
                self.speech_at(speed),
                self.clip_store,
                sentence_tokenizer(self.settings),
                namespace=namespace,
                shared_sentences=self.shared_sentences(),
            )
        fallback = self.fallback_voice()
        if fallback is None:
            return primary
        chain = VoiceChain(primary, fallback)
        chain.on("tts_availability_changed", _count_tts_fallback)
        return chain

    def check_voice(self, voice_id: str) -> None:
        """Raise ``UnknownVoice`` unless a session may speak with ``voice_id``."""
        if self.settings.tts_base_url:
            raise UnknownVoice("voices are the speech server's at TTS_BASE_URL: none to pick")
        self.voices.catalog.get(voice_id)

    def check_language(self, language: str) -> None:
        """Raise ``UnsupportedLanguage`` unless the STT model hears ``language``
        (a code, or ``auto``)."""
        if self.settings.stt_base_url:
            return  # the serving engine's model decides; it answers errors itself
        if self._hello is not None and self._hello.stt is not None:
            multilingual = self._hello.stt.multilingual
        else:
            from plugins.whisper.models import is_multilingual, packaged_tiny_en

            source = stt_model_source(self.settings)
            multilingual = is_multilingual(Path(source) if source else packaged_tiny_en())
        check_whisper_language(language, multilingual)

    def _other_voice(self, voice_id: str, speed: float | None, namespace: str | None) -> AnyTTS:
        if self.settings.tts_base_url:
            raise UnknownVoice("voices are the speech server's at TTS_BASE_URL: none to pick")
        engine = self.voices.engine(voice_id, speed, sentence_tokenizer(self.settings))
        primary = cached(
            engine,
            self.clip_store,
            sentence_tokenizer(self.settings),
            namespace=namespace,
            shared_sentences=self.shared_sentences(),
        )
        fallback = self.fallback_voice()
        if fallback is None or isinstance(engine, EspeakTTS):
            return primary
        chain = VoiceChain(primary, fallback)
        chain.on("tts_availability_changed", _count_tts_fallback)
        return chain

    def fallback_voice(self) -> EspeakTTS | None:
        """espeak-ng at the voice's rate (None when the binary is missing)."""
        if self._espeak_tts is None and not self._espeak_missing:
            try:
                self._espeak_tts = EspeakTTS(sample_rate=self.speech.sample_rate)
            except RuntimeError as e:  # no espeak-ng binary: no fallback voice, say so once
                logger.warning("no fallback voice", extra={"error": str(e)})
                self._espeak_missing = True
        return self._espeak_tts

    @property
    def llm(self) -> AnyLLM:
        """The LLM behind a first-token timeout and a circuit breaker shared by every session
        of the process (it protects the endpoint, not one conversation)."""
        if self._llm is None:
            s = self.settings
            self._llm = ResilientLLM(
                build_llm(s, self.inference, self._hello),
                first_token_timeout_s=s.llm_timeout_s,
                breaker=CircuitBreaker(
                    failures=s.llm_breaker_failures, reset_after_s=s.llm_breaker_reset_s
                ),
                apology=s.llm_apology,
            )
        return self._llm

    @property
    def llm_calls_tools(self) -> bool:
        """Whether the LLM can call tools: an endpoint can (vLLM with a tool-call parser,
        llama.cpp's server with --jinja); the embedded model here cannot (docs/tools.md)."""
        model = self.llm.inner if isinstance(self.llm, ResilientLLM) else self.llm
        return not isinstance(model, LlamaLLM)

    def context_budget(self) -> ContextBudget:
        """What one session may send the LLM: the model's window (``LLM_CONTEXT_TOKENS``, or
        the embedded model's own), minus the reply; counted by the model's tokenizer when it
        is in this process."""
        s = self.settings
        model = self.llm.inner if isinstance(self.llm, ResilientLLM) else self.llm
        embedded = model if isinstance(model, LlamaLLM) else None
        window = s.llm_context_tokens or (embedded.context_tokens if embedded else None)
        count = embedded.token_counter() if embedded else None
        return ContextBudget(
            context_tokens=window or ENDPOINT_CONTEXT_TOKENS,
            reply_tokens=s.llm_max_tokens,
            count=count or estimate_tokens,
        )

    def session_memory(self, tenant: str) -> SessionMemory:
        """Conversation memory for ``tenant``'s sessions in this process (one store per
        process: MEMORY_REDIS_URL, RATE_LIMIT_REDIS_URL, or SQLite under CACHE_PATH)."""
        from agent.obs.logs import Redactor

        s = self.settings
        if self._memory_store is None:
            self._memory_store = memory_store(
                s.memory_redis_url or s.rate_limit_redis_url, s.cache_path, s.memory_ttl_s
            )
        model = self.llm.inner if isinstance(self.llm, ResilientLLM) else self.llm
        return SessionMemory(
            self._memory_store,
            tenant,
            keep=s.memory_max_messages,
            model=model,
            budget=self.context_budget(),
            mask=Redactor(s.secret_values()).mask,
        )

    @property
    def turn_model(self) -> SmartTurnModel:
        if self._turn_model is None:
            self._turn_model = SmartTurnModel.from_cache(self.settings.cache_path)
        return self._turn_model

    @property
    def turn_batcher(self) -> TurnPredictor:
        """Every session's end-of-turn predictions, batched on one model thread (here or
        in the shared inference process)."""
        if self._turn_batcher is None:
            if self.inference is not None:
                from agent.models.shared.engines import RemoteTurn

                self._turn_batcher = RemoteTurn(self.inference)
            else:
                self._turn_batcher = TurnBatcher(self.turn_model)
        return self._turn_batcher

    def queued(self) -> dict[str, int]:
        """Requests waiting for each engine: in its executor's queue, and in its batcher
        (whisper and Smart Turn gather waiting requests there, so their executor queue never
        holds more than the running batch)."""
        engines = {
            "stt": self._stt,
            "tts": self._piper,
            "llm": self._llm,
            "turn": self._turn_batcher,
        }
        out = {}
        for name, engine in engines.items():
            executor = getattr(engine, "_executor", None)
            queue = getattr(executor, "_work_queue", None)
            waiting = getattr(engine, "waiting", 0)
            out[name] = (queue.qsize() if queue is not None else 0) + (
                waiting if isinstance(waiting, int) else 0
            )
        return out

    def start_queue_gauge(self, interval_s: float = 1.0) -> None:
        """Publish ``queued()`` as the ``voice_inference_queued`` gauge, once per process."""
        if self._queue_task is not None:
            return

        async def publish() -> None:
            while True:
                for engine, depth in self.queued().items():
                    INFERENCE_QUEUED.labels(engine).set(depth)
                for engine in QUEUE_DELAYS.engines():
                    INFERENCE_QUEUE_DELAY.labels(engine).set(QUEUE_DELAYS.delay(engine))
                await asyncio.sleep(interval_s)

        self._queue_task = asyncio.create_task(publish())

    def start_prewarm(self) -> None:
        """Fill the clip cache with the prewarm phrases in the background, once per process
        (only phrases no process has cached yet are synthesized)."""
        if self._prewarm_task is None and isinstance(self.tts, CachedTTS):
            phrases = self.settings.prewarm_phrases()
            if phrases:
                self._prewarm_task = asyncio.create_task(self.tts.fill(phrases))

    @property
    def turn_text(self) -> TextTurnScorer:
        """The process's text turn scorer (its model loads at the first pause it judges)."""
        if self._turn_text is None:
            from plugins._common.assets import resolve
            from plugins.llama import SMOLLM2_135M

            s = self.settings
            path = Path(s.turn_text_model) if s.turn_text_model else None
            self._turn_text = shared_text_scorer(path or resolve(SMOLLM2_135M, s.cache_path))
        return self._turn_text
