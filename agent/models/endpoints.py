"""Stages on an existing serving engine, over its OpenAI-compatible API.

When one machine is not enough, a stage moves to a server built for it instead of a worker
of ours: vLLM serving Whisper (``STT_BASE_URL``) or the LLM (``LLM_BASE_URL``), an
OpenAI-style speech server (``TTS_BASE_URL``). The session logic stays in the worker; the
speech clips still go through the clip cache, and a failing endpoint hands over to the
espeak-ng fallback voice as Piper would.
"""

from __future__ import annotations

from typing import Any

import openai
from livekit.plugins import openai as openai_plugin

from agent.settings import Settings
from plugins.whisper.endpoint import TranscriptionEndpoint

# a clip is decoded from WAV at any rate the server chooses and resampled to this one
SPEECH_RESPONSE_FORMAT = "wav"
# longest wait for one clip or one transcript: past it the fallback voice speaks, or the
# turn is decoded as empty, rather than the caller waiting on a stuck server
ENDPOINT_TIMEOUT_S = 10.0


class SpeechEndpoint(openai_plugin.TTS):
    """livekit-plugins-openai's TTS with what the clip cache needs to key its clips: the
    endpoint, model, voice and speed (the base class reports only the model)."""

    def __init__(
        self, *, base_url: str, model: str, voice: str, speed: float, client: openai.AsyncClient
    ) -> None:
        super().__init__(
            model=model,
            voice=voice,
            speed=speed,
            base_url=base_url,
            client=client,
            response_format=SPEECH_RESPONSE_FORMAT,
        )
        self.client = client
        self._identity = {
            "engine": "openai-compatible speech",
            "base_url": base_url.rstrip("/"),
            "model": model,
            "voice": voice,
            "speed": speed,
            "format": SPEECH_RESPONSE_FORMAT,
        }

    @property
    def options(self) -> dict[str, Any]:
        """The settings that change the audio: part of a clip-cache key."""
        return dict(self._identity)


def speech_client(settings: Settings) -> openai.AsyncClient:
    """One connection pool for every session's voice on TTS_BASE_URL."""
    return openai.AsyncClient(
        base_url=settings.tts_base_url,
        api_key=settings.tts_api_key or "unused",
        timeout=ENDPOINT_TIMEOUT_S,
        max_retries=0,  # the fallback voice answers instead of a second wait
    )


def speech_endpoint(
    settings: Settings, client: openai.AsyncClient, speed: float | None = None
) -> SpeechEndpoint:
    return SpeechEndpoint(
        base_url=settings.tts_base_url,
        model=settings.tts_remote_model,
        voice=settings.tts_remote_voice,
        speed=settings.tts_speed if speed is None else speed,
        client=client,
    )


def transcription_endpoint(settings: Settings) -> TranscriptionEndpoint:
    return TranscriptionEndpoint(
        base_url=settings.stt_base_url,
        model=settings.stt_remote_model,
        api_key=settings.stt_api_key or "unused",
        timeout_s=ENDPOINT_TIMEOUT_S,
    )
