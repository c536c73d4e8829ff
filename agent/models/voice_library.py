"""A process's voices: the catalog, and the model manager holding the optional Piper voices.

The default voice is the process's pinned ``Engines.piper``; every other Piper voice is
loaded by the manager when a session first speaks with it and unloaded by its rules
(agent/models/manager.py). Where the models live in the shared inference process, the
job's voices synthesize there (its manager holds them) and this process loads none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.models.manager import ModelManager
from agent.models.voices import Voice, VoiceCatalog, read_piper_config
from agent.settings import Settings
from plugins.espeak import EspeakTTS
from plugins.piper import PiperTTS, packaged_voice
from plugins.piper.tts import VoiceInfo

if TYPE_CHECKING:
    from livekit.agents import tokenize

    from agent.models.shared.client import InferenceClient


class ManagedVoice:
    """``plugins.piper.VoiceSynthesizer`` on a voice the model manager holds: it is resident
    (and counted in use) while each sentence is synthesized."""

    def __init__(self, manager: ModelManager[PiperTTS], voice: Voice, info: VoiceInfo) -> None:
        self._manager = manager
        self.voice = voice
        self.info = info

    async def synthesize(self, text: str, options: dict[str, Any]) -> bytes:
        async with self._manager.use(self.voice.id) as piper:
            return await piper.synthesize_with(text, options)


def voice_manager(settings: Settings, catalog: VoiceCatalog) -> ModelManager[PiperTTS]:
    use_cuda = settings.tts_device == "cuda" or (settings.tts_device == "auto" and _cuda_provider())

    def load(voice_id: str) -> PiperTTS:
        voice = catalog.get(voice_id)
        if voice.engine != "piper" or voice.model_path is None:
            raise ValueError(f"{voice_id} has no model to load")
        return PiperTTS(
            model_path=voice.model_path, config_path=voice.config_path, use_cuda=use_cuda
        )

    return ModelManager(
        load=load,
        unload=PiperTTS.close,
        size=lambda piper: piper.model_path.stat().st_size,
        kind="voice",
        cap=settings.models_resident_cap,
        idle_ttl_s=settings.models_idle_ttl_s,
        min_residency_s=settings.models_min_residency_s,
    )


def _config_rate(config_path: Path) -> int:
    try:
        return int(read_piper_config(config_path)["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError):
        return 22050  # Piper's medium voices' rate: the default voice reports its own


def _cuda_provider() -> bool:
    from plugins.piper.tts import cuda_provider_available

    return cuda_provider_available()


class VoiceLibrary:
    def __init__(
        self,
        settings: Settings,
        *,
        default_model: Path | None = None,
        default_config: Path | None = None,
        output_rate: int | None = None,
        inference: InferenceClient | None = None,
    ) -> None:
        if default_model is None:
            if settings.tts_voice:
                default_model = Path(settings.tts_voice)
                default_config = Path(f"{default_model}.json")
            else:
                default_model, default_config = packaged_voice()
        assert default_config is not None
        self.settings = settings
        # every voice of a session speaks at the default voice's rate (a session's audio
        # output has one); reading it from the config loads nothing
        rate = output_rate or _config_rate(default_config)
        self.output_rate = rate
        self.catalog = VoiceCatalog.discover(
            default_model,
            default_config,
            settings.cache_path / "models" / "piper",
            espeak_rate=rate,
        )
        self._inference = inference
        self._manager: ModelManager[PiperTTS] | None = None

    @property
    def manager(self) -> ModelManager[PiperTTS]:
        """This process's manager (the inference process's, when jobs use it)."""
        if self._manager is None:
            self._manager = voice_manager(self.settings, self.catalog)
        return self._manager

    def is_default(self, voice_id: str | None) -> bool:
        return voice_id is None or voice_id == self.catalog.default

    def engine(
        self,
        voice_id: str,
        speed: float | None,
        tokenizer: tokenize.SentenceTokenizer,
    ) -> PiperTTS | EspeakTTS:
        """A TTS speaking with ``voice_id`` (not the default) at the session's rate; raises
        ``UnknownVoice``. Nothing loads here: a Piper voice loads at its first sentence."""
        voice = self.catalog.get(voice_id)
        if voice.engine == "espeak":
            return EspeakTTS(voice=voice.language, sample_rate=self.output_rate)
        assert voice.config_path is not None and voice.model_path is not None
        info = VoiceInfo.from_config(read_piper_config(voice.config_path))
        synthesizer: Any
        if self._inference is not None:
            from agent.models.shared.engines import RemoteVoice

            synthesizer = RemoteVoice.named(self._inference, voice, info)
        else:
            synthesizer = ManagedVoice(self.manager, voice, info)
        return PiperTTS(
            model_path=voice.model_path,
            config_path=voice.config_path,
            speed=speed if speed is not None else self.settings.tts_speed,
            sentence_tokenizer=tokenizer,
            use_cuda=False,
            synthesizer=synthesizer,
            output_rate=self.output_rate,
        )

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
