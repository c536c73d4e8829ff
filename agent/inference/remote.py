"""The engines of a job process when the models live in the shared inference process.

Each one plugs into the same livekit-agents plugin as the local model would
(``WhisperSTT(decoder=...)``, ``PiperTTS(synthesizer=...)``,
``SmartTurnDetector(batcher=...)``) or is a small ``llm.LLM[Any]``; the session code cannot tell
the difference, and everything per-session (VAD, noise filter, interim scheduling, sentence
splitting, clip cache) stays in the job process.
"""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import replace
from typing import Any

import numpy as np
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, llm, utils
from livekit.agents.llm import ChatContext, Tool
from livekit.agents.types import NOT_GIVEN, NotGivenOr

from agent.inference.client import InferenceClient
from agent.inference.protocol import Header
from plugins.llama.llm import _LLMOptions, text_messages
from plugins.piper.tts import VoiceInfo
from plugins.whisper.models import ResolvedModel

# a decode or a synthesis far longer than this means the inference process is stuck
REQUEST_TIMEOUT_S = 30.0


def _f32(audio: np.ndarray) -> bytes:
    return np.ascontiguousarray(audio, dtype="<f4").tobytes()


class RemoteDecoder:
    """``plugins.whisper.SpeechDecoder`` over the inference process."""

    def __init__(self, client: InferenceClient, hello: Header) -> None:
        self._client = client
        stt = hello["stt"]
        self.resolved = ResolvedModel(stt["source"], stt["device"], stt["compute_type"])

    async def decode(self, audio: np.ndarray, language: str | None, beam_size: int) -> str:
        reply, _ = await self._client.call(
            "stt",
            {"language": language, "beam_size": beam_size},
            _f32(audio),
            timeout_s=REQUEST_TIMEOUT_S,
        )
        return str(reply["text"])


class RemoteVoice:
    """``plugins.piper.VoiceSynthesizer`` over the inference process."""

    def __init__(self, client: InferenceClient, hello: Header) -> None:
        self._client = client
        voice = hello["voice"]
        self.model_path: str = voice["path"]
        self.config_path: str | None = voice["config_path"]
        self.info = VoiceInfo(
            sample_rate=int(voice["sample_rate"]),
            num_speakers=int(voice["num_speakers"]),
            length_scale=float(voice["length_scale"]),
            espeak_voice=str(voice.get("espeak_voice") or "en-us"),
        )

    async def synthesize(self, text: str, options: dict[str, Any]) -> bytes:
        _, pcm = await self._client.call(
            "tts", {"text": text, "options": options}, timeout_s=REQUEST_TIMEOUT_S
        )
        return pcm


class RemoteTurn:
    """``plugins.smart_turn.TurnPredictor`` over the inference process (batched there
    with every other job's pauses)."""

    def __init__(self, client: InferenceClient) -> None:
        self._client = client

    async def predict(self, audio16k: np.ndarray) -> float:
        reply, _ = await self._client.call("turn", body=_f32(audio16k), timeout_s=5.0)
        return float(reply["p"])


class RemoteLLM(llm.LLM[Any]):
    """The embedded llama.cpp model of the inference process, streamed token by token."""

    def __init__(
        self,
        client: InferenceClient,
        model: str,
        *,
        temperature: float = 0.6,
        max_tokens: int = 160,
        top_p: float = 0.9,
        seed: int | None = None,
        context_tokens: int | None = None,
    ) -> None:
        super().__init__()
        self._client = client
        self._model = model
        # the model's window, from the inference process's hello (no tokenizer here: the
        # session's context budget estimates)
        self.context_tokens = context_tokens
        self._opts = _LLMOptions(
            temperature=temperature, max_tokens=max_tokens, top_p=top_p, seed=seed
        )

    @property
    def model(self) -> str:
        return self._model

    @property
    def provider(self) -> str:
        return "llama.cpp (shared)"

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[Any] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> RemoteLLMStream:
        return RemoteLLMStream(
            self,
            client=self._client,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            opts=replace(self._opts),
        )


class RemoteLLMStream(llm.LLMStream):
    def __init__(
        self,
        llm: RemoteLLM,
        *,
        client: InferenceClient,
        chat_ctx: ChatContext,
        tools: list[Tool],
        conn_options: APIConnectOptions,
        opts: _LLMOptions,
    ) -> None:
        super().__init__(llm, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._client = client
        self._opts = opts

    async def _run(self) -> None:
        request_id = utils.shortuuid()
        header = {"messages": text_messages(self._chat_ctx), "options": self._opts.to_dict()}
        # closing this stream (barge-in) leaves the loop, which cancels the generation there
        pieces = self._client.stream("llm", header, timeout_s=REQUEST_TIMEOUT_S)
        async with aclosing(pieces):
            async for piece in pieces:
                self._event_ch.send_nowait(
                    llm.ChatChunk(
                        id=request_id,
                        delta=llm.ChoiceDelta(role="assistant", content=str(piece["delta"])),
                    )
                )
