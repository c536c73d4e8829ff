"""The engines of a job process when the models live in the shared inference process.

Each one plugs into the same livekit-agents plugin as the local model would
(``WhisperSTT(decoder=...)``, ``PiperTTS(synthesizer=...)``,
``SmartTurnDetector(batcher=...)``, ``LlamaLLM(generator=...)``); the session code cannot
tell the difference, and everything per-session (VAD, noise filter, interim scheduling, sentence
splitting, clip cache) stays in the job process.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import numpy as np

from agent.models.shared.client import InferenceClient
from agent.models.shared.hello import VoiceHello
from agent.models.voices import Voice
from plugins.piper.tts import VoiceInfo
from plugins.whisper.models import ResolvedModel

# a decode or a synthesis far longer than this means the inference process is stuck
REQUEST_TIMEOUT_S = 30.0
VOICE_LOAD_TIMEOUT_S = 120.0


def _f32(audio: np.ndarray) -> bytes:
    return np.ascontiguousarray(audio, dtype="<f4").tobytes()


class RemoteDecoder:
    """``plugins.whisper.SpeechDecoder`` over the inference process."""

    def __init__(self, client: InferenceClient, resolved: ResolvedModel) -> None:
        self._client = client
        self.resolved = resolved

    async def decode(self, audio: np.ndarray, language: str | None, beam_size: int) -> str:
        reply, _ = await self._client.call(
            "stt",
            {"language": language, "beam_size": beam_size},
            _f32(audio),
            timeout_s=REQUEST_TIMEOUT_S,
        )
        return str(reply["text"])

    async def detect_language(self, audio: np.ndarray) -> str | None:
        reply, _ = await self._client.call(
            "language", body=_f32(audio), timeout_s=REQUEST_TIMEOUT_S
        )
        language = reply.get("language")
        return str(language) if language else None


class RemoteVoice:
    """``plugins.piper.VoiceSynthesizer`` over the inference process."""

    def __init__(
        self, client: InferenceClient, voice: VoiceHello, voice_id: str | None = None
    ) -> None:
        self._client = client
        self.model_path = voice.path
        self.config_path = voice.config_path
        self.info = voice.info
        self._voice_id = voice_id  # None: the inference process's default voice

    @classmethod
    def named(cls, client: InferenceClient, voice: Voice, info: VoiceInfo) -> RemoteVoice:
        """Another voice of the catalog: the inference process's model manager loads it."""
        assert voice.model_path is not None and voice.config_path is not None
        hello = VoiceHello(str(voice.model_path), str(voice.config_path), info)
        return cls(client, hello, voice.id)

    async def synthesize(self, text: str, options: dict[str, Any]) -> bytes:
        header: dict[str, Any] = {"text": text, "options": options}
        if self._voice_id is not None:
            header["voice"] = self._voice_id
        # a voice the inference process is still loading takes longer than one sentence
        timeout = REQUEST_TIMEOUT_S if self._voice_id is None else VOICE_LOAD_TIMEOUT_S
        _, pcm = await self._client.call("tts", header, timeout_s=timeout)
        return pcm


class RemoteTurn:
    """``plugins.smart_turn.TurnPredictor`` over the inference process (batched there
    with every other job's pauses)."""

    def __init__(self, client: InferenceClient) -> None:
        self._client = client

    async def predict(self, audio16k: np.ndarray) -> float:
        reply, _ = await self._client.call("turn", body=_f32(audio16k), timeout_s=5.0)
        return float(reply["p"])


class SharedGenerator:
    """``plugins.llama.PieceGenerator`` over the inference process: the embedded model there
    streams its reply here token by token."""

    def __init__(self, client: InferenceClient) -> None:
        self._client = client

    async def pieces(
        self, messages: list[dict[str, str]], options: dict[str, Any]
    ) -> AsyncGenerator[str, None]:
        header = {"messages": messages, "options": options}
        # closing this (barge-in) leaves the loop, which cancels the generation there
        stream = self._client.stream("llm", header, timeout_s=REQUEST_TIMEOUT_S)
        async with aclosing(stream):
            async for piece in stream:
                yield str(piece["delta"])
