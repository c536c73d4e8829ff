"""espeak-ng as a LiveKit TTS: robotic, but tiny, always local and independent of any model
file, which makes it the last resort behind the real voice (``tts.FallbackAdapter``)."""

from __future__ import annotations

import asyncio
import io
import shutil
import wave
from typing import Any

import numpy as np
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    tts,
    utils,
)

from .._common.audio import resample
from .._common.text import speakable

ESPEAK_RATE = 22050


class EspeakTTS(tts.TTS[Any]):
    def __init__(
        self, *, voice: str = "en-us", words_per_minute: int = 165, sample_rate: int = 22050
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=sample_rate,
            num_channels=1,
        )
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
        self._binary = binary
        self._voice = voice
        self._wpm = words_per_minute

    @property
    def model(self) -> str:
        return self._voice

    @property
    def provider(self) -> str:
        return "espeak-ng"

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> EspeakChunkedStream:
        return EspeakChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    async def synthesize_pcm(self, text: str) -> bytes:
        text = speakable(text)
        if not text.strip():
            return bytes(2 * self.sample_rate * 40 // 1000)  # nothing to say: a short pause
        # "--" ends the options: text starting with "-" is spoken, not parsed
        proc = await asyncio.create_subprocess_exec(
            self._binary,
            "--stdout",
            "-v",
            self._voice,
            "-s",
            str(self._wpm),
            "--",
            text,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0 or not out:
            raise APIConnectionError(f"espeak-ng failed: {err.decode(errors='replace')[:200]}")
        with wave.open(io.BytesIO(out)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        if rate != self.sample_rate:
            pcm = (
                resample(pcm.astype(np.float32) / 32768.0, rate, self.sample_rate) * 32767
            ).astype(np.int16)
        return pcm.tobytes()


class EspeakChunkedStream(tts.ChunkedStream):
    def __init__(self, *, tts: EspeakTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._espeak = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=self._espeak.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        output_emitter.push(await self._espeak.synthesize_pcm(self.input_text))
        output_emitter.flush()
