"""An OpenAI-compatible speech server on loopback around the packaged engines: what vLLM
(serving Whisper) and OpenAI-style speech servers answer, for the worker's ``remote`` stages.

    python -m tests.speech_server --port 8123 --cache .cache

- ``POST /v1/audio/transcriptions`` (multipart: ``file``, ``model``, ``language``,
  ``response_format``) → ``{"text": ...}``, decoded by faster-whisper tiny.en;
- ``POST /v1/audio/speech`` (JSON: ``model``, ``input``, ``voice``, ``response_format``,
  ``speed``) → a WAV file synthesized by the packaged Piper voice;
- ``GET /stats`` → how many requests of each kind it answered, and the last one's fields.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import wave
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web


def build_app(cache: Path) -> web.Application:
    from faster_whisper import WhisperModel
    from piper import PiperVoice, SynthesisConfig

    from plugins.piper.tts import packaged_voice
    from plugins.whisper.models import packaged_tiny_en

    whisper = WhisperModel(str(packaged_tiny_en()), device="cpu", compute_type="int8")
    model_path, config_path = packaged_voice()
    voice = PiperVoice.load(model_path, config_path=config_path)
    stats: dict[str, Any] = {"transcriptions": 0, "speech": 0, "last": {}}
    lock = asyncio.Lock()  # one decode or synthesis at a time, as one small server would

    async def transcriptions(request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return web.json_response({"error": {"message": "file is required"}}, status=400)
        with wave.open(io.BytesIO(upload.file.read()), "rb") as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            rate = w.getframerate()
        if rate != 16000:
            return web.json_response({"error": {"message": "16 kHz audio only"}}, status=400)
        language = str(form.get("language") or "en")
        async with lock:
            segments, _ = await asyncio.to_thread(
                whisper.transcribe,
                pcm.astype(np.float32) / 32768.0,
                language=language,
                beam_size=1,
                without_timestamps=True,
            )
            text = await asyncio.to_thread(lambda: "".join(s.text for s in segments))
        stats["transcriptions"] += 1
        stats["last"]["transcription"] = {"model": form.get("model"), "language": language}
        return web.json_response({"text": text.strip()})

    async def speech(request: web.Request) -> web.Response:
        body = await request.json()
        text = str(body.get("input", ""))
        speed = float(body.get("speed") or 1.0)
        if not text.strip() or speed <= 0:
            return web.json_response({"error": {"message": "input and speed"}}, status=400)
        config = SynthesisConfig(length_scale=1.0 / speed)
        async with lock:
            chunks = await asyncio.to_thread(
                lambda: [c.audio_int16_bytes for c in voice.synthesize(text, syn_config=config)]
            )
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(voice.config.sample_rate)
            w.writeframes(b"".join(chunks))
        stats["speech"] += 1
        stats["last"]["speech"] = {
            k: body.get(k) for k in ("model", "voice", "speed", "response_format")
        }
        return web.Response(body=out.getvalue(), content_type="audio/wav")

    async def get_stats(_: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_get("/stats", get_stats)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cache", type=Path, default=Path(".cache"))
    args = parser.parse_args()
    web.run_app(build_app(args.cache), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
