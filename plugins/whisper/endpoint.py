"""Whisper on an existing serving engine: a ``SpeechDecoder`` over the OpenAI-compatible
``/v1/audio/transcriptions`` API (vLLM serving Whisper, faster-whisper servers, OpenAI).

The session logic stays here (interim decodes at pauses, the pause text for the end-of-turn
detector, the manual flush); only the decode of an utterance crosses the network. Each
decode is one request with the utterance as a 16-bit WAV file.
"""

from __future__ import annotations

import io
import wave

import numpy as np
import openai
from livekit.agents import APIConnectionError, APIStatusError, APITimeoutError

from .._common.audio import Float32Array
from .models import ResolvedModel

SAMPLE_RATE = 16000


def wav_bytes(audio: Float32Array, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Mono float samples as a 16-bit PCM WAV file."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


class TranscriptionEndpoint:
    """``plugins.whisper.SpeechDecoder`` over an OpenAI-compatible transcription endpoint.

    Args:
        base_url: the API root, e.g. ``http://vllm:8000/v1``.
        model: the model name the server serves (vLLM: its ``--served-model-name``).
        api_key: sent as a bearer token (servers without auth ignore it).
        timeout_s: longest wait for one decode.
        client: an ``openai.AsyncClient`` to share (tests, connection pools).
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str = "unused",
        timeout_s: float = 10.0,
        client: openai.AsyncClient | None = None,
    ) -> None:
        self._model = model
        self._client = client or openai.AsyncClient(
            base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0
        )
        # "remote": no local device; the window minimum is the server's business
        self.resolved = ResolvedModel(f"{base_url.rstrip('/')}#{model}", "remote", "remote")

    async def decode(self, audio: Float32Array, language: str | None, beam_size: int) -> str:
        """The text of one utterance. ``beam_size`` is not part of the OpenAI API: the
        server decodes with its own settings."""
        try:
            result = await self._client.audio.transcriptions.create(
                model=self._model,
                file=("utterance.wav", wav_bytes(audio), "audio/wav"),
                language=language or openai.omit,
                response_format="json",
                temperature=0.0,
            )
        except openai.APITimeoutError as e:
            raise APITimeoutError(f"transcription endpoint: {e}") from e
        except openai.APIStatusError as e:
            raise APIStatusError(
                f"transcription endpoint: {e.message}", status_code=e.status_code, body=e.body
            ) from e
        except openai.APIError as e:
            raise APIConnectionError(f"transcription endpoint: {e}") from e
        return str(result.text).strip()

    async def aclose(self) -> None:
        await self._client.close()
