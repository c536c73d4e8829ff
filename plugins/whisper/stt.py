"""Speech-to-text on faster-whisper, in-process, as a livekit-agents ``stt.STT[Any]``.

Two ways to use it:

- streaming (default): one long-lived ``RecognizeStream`` per session (``stream.py``)
  buffers the user's speech, publishes interim transcripts while they talk, decodes at
  every pause so the final transcript is ready when the session flushes it
  (``manual_flush``: at the end-of-turn decision, or at VAD end of speech when there is no
  turn detector).
- batch: ``recognize()`` on a buffer; with ``streaming=False`` the session wraps the plugin
  in the framework's ``StreamAdapter``, which decodes each VAD segment whole.

Decoding runs on a dedicated thread, batched across every session of the process
(``batch.py``), so the event loop only moves frames. With ``decoder`` the decoding happens
elsewhere (the worker's shared inference process) and this process loads no model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    stt,
    utils,
)
from livekit.agents.language import LanguageCode
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer, is_given

from .._common.audio import Float32Array, frames_to_mono
from .._common.batching import Batcher
from .._common.executor import in_executor
from .._common.pause_text import PauseText
from .batch import DecodeRequest, decode_batch
from .log import logger
from .models import ComputeType, Device, ResolvedModel, load_whisper, resolve_model

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from .session import SessionSTT
    from .stream import WhisperRecognizeStream

SAMPLE_RATE = 16000


class SpeechDecoder(Protocol):
    """Decoding done outside this process (the shared inference process's client)."""

    @property
    def resolved(self) -> ResolvedModel: ...

    async def decode(self, audio: Float32Array, language: str | None, beam_size: int) -> str: ...


@dataclass(slots=True)
class _STTOptions:
    beam_size: int
    language: str | None
    interim_interval: float
    voice_threshold_dbfs: float
    vad_filter: bool


class WhisperSTT(stt.STT[Any]):
    """faster-whisper speech-to-text.

    Args:
        model: a size name (``"tiny.en"``, ``"base"``, ``"large-v3"``…) already present in
            ``download_root``, or a local CTranslate2 model directory. Default: the packaged
            tiny.en.
        device: ``"auto"`` (CUDA when present), ``"cuda"`` or ``"cpu"``.
        compute_type: ``"int8"``, ``"int8_float16"``, ``"float16"``… or ``"auto"``.
        beam_size: 1 is greedy decoding, the lowest latency.
        language: ISO code, or ``None`` to detect (multilingual models only).
        streaming: expose a native stream with interim results (``True``) or only batch
            recognition, leaving segmentation to the framework's ``StreamAdapter``.
        interim_interval: seconds between interim decodes while the user speaks; 0 disables.
        voice_threshold_dbfs: RMS level above which a frame counts as voiced for trimming
            leading silence and scheduling interims.
        vad_filter: run faster-whisper's own Silero filter inside each decode.
        model_instance: share an already loaded ``WhisperModel`` (one copy per process).
        decoder: decode elsewhere (no model in this process); the options above that pick
            and load a model are then ignored.
    """

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        device: Device = "auto",
        compute_type: ComputeType = "auto",
        beam_size: int = 1,
        language: str | None = "en",
        streaming: bool = True,
        interim_interval: float = 0.6,
        voice_threshold_dbfs: float = -50.0,
        vad_filter: bool = False,
        download_root: Path | None = None,
        cpu_threads: int = 0,
        num_workers: int = 1,
        min_window_s: float | None = None,
        model_instance: WhisperModel | None = None,
        decoder: SpeechDecoder | None = None,
    ) -> None:
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=streaming,
                interim_results=streaming and interim_interval > 0,
                manual_flush=streaming,
            )
        )
        if beam_size < 1:
            raise ValueError("beam_size must be >= 1")
        if min_window_s is not None and not 1.0 <= min_window_s <= 30.0:
            raise ValueError("min_window_s must be within [1, 30]")
        self._decoder = decoder
        self._resolved: ResolvedModel = (
            decoder.resolved if decoder else resolve_model(model, device, compute_type)
        )
        # a GPU encodes whisper's full window in a few ms; a CPU pays for every second of it
        self._min_window_s = min_window_s or (30.0 if self._resolved.device == "cuda" else 10.0)
        self._opts = _STTOptions(
            beam_size=beam_size,
            language=language,
            interim_interval=interim_interval,
            voice_threshold_dbfs=voice_threshold_dbfs,
            vad_filter=vad_filter,
        )
        # one decode at a time per worker: CTranslate2 queues internally, we keep the loop free
        self._executor = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="whisper")
        self._model: WhisperModel | None = None
        self._batcher: Batcher[DecodeRequest, str] | None = None
        if decoder is None:
            self._model = model_instance or load_whisper(
                self._resolved,
                download_root=download_root,
                cpu_threads=cpu_threads,
                num_workers=num_workers,
            )
            self._batcher = Batcher(self.decode_batch, self._executor)
            logger.info(
                "whisper model loaded",
                extra={
                    "model": self._resolved.source,
                    "device": self._resolved.device,
                    "compute_type": self._resolved.compute_type,
                },
            )

    @property
    def model(self) -> str:
        return Path(self._resolved.source).name

    @property
    def whisper_model(self) -> Any:
        """The loaded faster-whisper model (None when decoding happens elsewhere): for
        benchmarks that compare this plugin with the bare engine."""
        return self._model

    @property
    def provider(self) -> str:
        return "faster-whisper"

    @property
    def resolved(self) -> ResolvedModel:
        return self._resolved

    def update_options(
        self,
        *,
        beam_size: NotGivenOr[int] = NOT_GIVEN,
        language: NotGivenOr[str | None] = NOT_GIVEN,
        interim_interval: NotGivenOr[float] = NOT_GIVEN,
    ) -> None:
        if is_given(beam_size):
            if beam_size < 1:
                raise ValueError("beam_size must be >= 1")
            self._opts.beam_size = beam_size
        if is_given(language):
            self._opts.language = language
        if is_given(interim_interval):
            self._opts.interim_interval = interim_interval

    @property
    def waiting(self) -> int:
        """Decodes waiting for the next batch."""
        return self._batcher.waiting if self._batcher else 0

    @property
    def batch_sizes(self) -> list[int]:
        """Sizes of the recent batched decodes (empty when decoding elsewhere)."""
        return self._batcher.batch_sizes if self._batcher else []

    def _loaded(self) -> WhisperModel:
        if self._model is None:
            raise RuntimeError("this WhisperSTT decodes through its decoder, it has no model")
        return self._model

    def decode_batch(self, requests: list[DecodeRequest]) -> list[str]:
        """Blocking decode of several utterances as one batch (see ``batch.py``)."""
        return decode_batch(self._loaded(), requests, self._min_window_s)

    def transcribe_array(self, audio: Float32Array, language: str | None = None) -> str:
        """Blocking decode of 16 kHz mono audio with faster-whisper's own ``transcribe``;
        consumes the lazy segment generator here."""
        if audio.size == 0:
            return ""
        segments, _info = self._loaded().transcribe(
            audio,
            language=language or self._opts.language,
            beam_size=self._opts.beam_size,
            vad_filter=self._opts.vad_filter,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        return " ".join(seg.text.strip() for seg in segments).strip()

    async def transcribe(self, audio: Float32Array, language: str | None = None) -> str:
        language = language or self._opts.language
        if self._decoder is not None:  # errors are the decoder's, already APIErrors
            return await self._decoder.decode(audio, language, self._opts.beam_size)
        return await self.decode(audio, language, self._opts.beam_size)

    def detect_language_array(self, audio: Float32Array) -> str | None:
        """Blocking: the language spoken in ``audio`` (one encoder pass), or None when the
        model hears English only."""
        model = self._loaded()
        if not model.model.is_multilingual:
            return None
        language, _probability, _all = model.detect_language(audio)
        return str(language)

    async def detect_language(self, audio: Float32Array) -> str | None:
        """The language spoken in ``audio``: by this process's model, or by the decoder
        where it can tell (the inference process); None when nobody can."""
        if self._decoder is not None:
            detect = getattr(self._decoder, "detect_language", None)
            return await detect(audio) if detect is not None else None
        try:
            return await in_executor(self._executor, self.detect_language_array, audio)
        except (RuntimeError, ValueError) as e:
            raise APIConnectionError(f"language detection failed: {e}", retryable=False) from e

    async def decode(self, audio: Float32Array, language: str | None, beam_size: int) -> str:
        """Decode with this process's model, batched with every other caller's."""
        try:
            if self._opts.vad_filter or self._batcher is None:
                return await in_executor(self._executor, self.transcribe_array, audio, language)
            return await self._batcher.submit(DecodeRequest(audio, language, beam_size))
        except (RuntimeError, ValueError, MemoryError) as e:
            raise APIConnectionError(f"faster-whisper decode failed: {e}", retryable=False) from e

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        frames = buffer if isinstance(buffer, list) else [buffer]
        audio = frames_to_mono(frames, SAMPLE_RATE)
        lang = language if is_given(language) else self._opts.language
        text = await self.transcribe(audio, lang)
        return final_event(utils.shortuuid(), text, lang, len(audio) / SAMPLE_RATE)

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> WhisperRecognizeStream:
        return self.stream_for(self, language=language, conn_options=conn_options)

    def stream_for(
        self,
        owner: stt.STT[Any],
        *,
        pause_text: PauseText | None = None,
        language: NotGivenOr[str | None] = NOT_GIVEN,
        on_language: Callable[[str], None] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> WhisperRecognizeStream:
        """A stream decoding on this model whose events go to ``owner`` (a session's STT).
        With ``on_language`` and no language, the first utterance's language is detected,
        kept by the stream and told to ``on_language``."""
        from .stream import WhisperRecognizeStream

        opts = replace(self._opts)
        if is_given(language):
            opts.language = language
        return WhisperRecognizeStream(
            stt=owner,
            whisper=self,
            opts=opts,
            conn_options=conn_options,
            pause_text=pause_text,
            on_language=on_language,
        )

    def for_session(
        self, pause_text: PauseText, language: NotGivenOr[str | None] = NOT_GIVEN
    ) -> SessionSTT:
        """This model as one session's STT: its streams publish pause text to ``pause_text``;
        ``language`` is the session's (``"auto"``: detected on the first utterance, then
        kept; default: this model's)."""
        from .session import SessionSTT

        return SessionSTT(self, pause_text, language if is_given(language) else self._opts.language)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def final_event(
    request_id: str, text: str, language: str | None, duration: float
) -> stt.SpeechEvent:
    return stt.SpeechEvent(
        type=stt.SpeechEventType.FINAL_TRANSCRIPT,
        request_id=request_id,
        alternatives=[
            stt.SpeechData(
                language=LanguageCode(language or ""), text=text, confidence=1.0 if text else 0.0
            )
        ],
        recognition_usage=stt.RecognitionUsage(audio_duration=duration),
    )


__all__ = ["WhisperSTT"]
