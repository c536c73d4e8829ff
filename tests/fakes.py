"""Fake engines on a fast clock: the VoiceManager's own logic without models.

A ``Caller`` scripts what the participant says and when; the fake VAD and STT of its session
report that speech as a real VAD and STT would (start, growing speech duration, end, then the
final transcript), the fake LLM answers from the words, and the fake TTS speaks a tone as long
as the reply's words. Every duration is divided by ``SPEED``, so a conversation that takes
seconds in a room takes a fraction here; the session's own timers (endpointing, interruption,
user-away) are given in the same scaled time. The real-model tests stay for what needs the
models (tests/agent/test_voice_manager.py, tests/plugins/, tests/room/).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    AgentSession,
    APIConnectOptions,
    llm,
    stt,
    tokenize,
    tts,
    utils,
    vad,
)
from livekit.agents.language import LanguageCode

from agent.models.engines import Engines
from agent.session.config import SessionConfig
from agent.session.swappable import SwappableTTS
from agent.settings import Settings

SPEED = 5.0  # script seconds per wall-clock second
TTS_RATE = 24000
WORD_SECONDS = 0.25  # how long the fake voice takes per word, in script time
VAD_STEP = 0.05  # the fake VAD's inference interval, in script time


def scaled(seconds: float) -> float:
    return seconds / SPEED


@dataclass(frozen=True)
class Utterance:
    text: str
    seconds: float  # script time


class Caller:
    """What one participant says; the VAD and STT streams of its session listen to it."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[Utterance], None]] = []

    def listen(self, listener: Callable[[Utterance], None]) -> None:
        self._listeners.append(listener)

    async def say(self, text: str, seconds: float | None = None) -> None:
        """Speak ``text`` now (about 0.3 s a word); returns when the speech has ended."""
        utterance = Utterance(text, seconds or 0.3 * len(text.split()))
        for listener in list(self._listeners):
            listener(utterance)
        await asyncio.sleep(scaled(utterance.seconds))


class FakeVAD(vad.VAD):
    def __init__(self, caller: Caller) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=scaled(VAD_STEP)))
        self._caller = caller

    def stream(self) -> vad.VADStream:
        return FakeVADStream(self, self._caller)


class FakeVADStream(vad.VADStream):
    def __init__(self, owner: FakeVAD, caller: Caller) -> None:
        super().__init__(owner)
        self._tasks: set[asyncio.Task[None]] = set()
        caller.listen(self._heard)

    def _heard(self, utterance: Utterance) -> None:
        task = asyncio.create_task(self._speak(utterance))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _event(self, kind: vad.VADEventType, speech: float, speaking: bool) -> vad.VADEvent:
        return vad.VADEvent(
            type=kind,
            samples_index=0,
            timestamp=time.time(),
            speech_duration=speech,
            silence_duration=0.0,
            speaking=speaking,
            probability=1.0 if speaking else 0.0,
        )

    async def _speak(self, utterance: Utterance) -> None:
        send = self._event_ch.send_nowait
        send(self._event(vad.VADEventType.START_OF_SPEECH, 0.0, True))
        steps = max(1, round(utterance.seconds / VAD_STEP))
        for step in range(1, steps + 1):
            await asyncio.sleep(scaled(VAD_STEP))
            send(self._event(vad.VADEventType.INFERENCE_DONE, step * VAD_STEP, True))
        send(self._event(vad.VADEventType.END_OF_SPEECH, utterance.seconds, False))

    async def _main_task(self) -> None:
        # the frames are not listened to: the caller's script says when speech happens
        async for _ in self._input_ch:
            pass
        for task in self._tasks:
            task.cancel()


class FakeSTT(stt.STT[Any]):
    def __init__(self, caller: Caller, *, delay: float = 0.1) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=True))
        self._caller = caller
        self.delay = delay  # script time from the end of speech to the final transcript

    async def _recognize_impl(self, buffer: Any, *, language: Any, conn_options: Any) -> Any:
        raise NotImplementedError("the fake STT only streams")

    def stream(
        self,
        *,
        language: Any = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        return FakeRecognizeStream(self, self._caller, conn_options)


class FakeRecognizeStream(stt.RecognizeStream):
    def __init__(self, owner: FakeSTT, caller: Caller, conn_options: APIConnectOptions) -> None:
        super().__init__(stt=owner, conn_options=conn_options, sample_rate=16000)
        self._owner = owner
        caller.listen(self._heard)

    def _heard(self, utterance: Utterance) -> None:
        asyncio.get_running_loop().call_later(
            scaled(utterance.seconds + self._owner.delay), self._final, utterance.text
        )

    def _final(self, text: str) -> None:
        if self._event_ch.closed:
            return
        self._event_ch.send_nowait(
            stt.SpeechEvent(
                type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                alternatives=[stt.SpeechData(language=LanguageCode("en"), text=text)],
            )
        )

    async def _run(self) -> None:
        async for _ in self._input_ch:
            pass


class FakeLLM(llm.LLM[Any]):
    """Answers ``reply(user_text)`` (default: "You said: <text>.") word by word."""

    def __init__(self, reply: Callable[[str], str] | None = None, ttft: float = 0.2) -> None:
        super().__init__()
        self.reply = reply or (lambda text: f"You said: {text}.")
        self.ttft = ttft  # script time
        self.requests: list[str] = []

    def chat(self, *, chat_ctx: llm.ChatContext, **kwargs: Any) -> llm.LLMStream:
        return FakeLLMStream(
            self, chat_ctx, kwargs.get("conn_options", DEFAULT_API_CONNECT_OPTIONS)
        )


class FakeLLMStream(llm.LLMStream):
    def __init__(
        self, owner: FakeLLM, chat_ctx: llm.ChatContext, conn_options: APIConnectOptions
    ) -> None:
        super().__init__(owner, chat_ctx=chat_ctx, tools=[], conn_options=conn_options)
        self._owner = owner

    async def _run(self) -> None:
        users = [
            m.text_content or ""
            for m in self._chat_ctx.items
            if m.type == "message" and m.role == "user"
        ]
        asked = users[-1] if users else ""
        self._owner.requests.append(asked)
        await asyncio.sleep(scaled(self._owner.ttft))
        request_id = utils.shortuuid()
        for word in self._owner.reply(asked).split(" "):
            self._event_ch.send_nowait(
                llm.ChatChunk(
                    id=request_id, delta=llm.ChoiceDelta(role="assistant", content=word + " ")
                )
            )
            await asyncio.sleep(scaled(0.02))


class FakeTTS(tts.TTS[Any]):
    """A 440 Hz tone, WORD_SECONDS per word (script time), at ``speed`` words' pace."""

    def __init__(self, speed: float = 1.0) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=TTS_RATE,
            num_channels=1,
        )
        self.speed = speed
        self.spoken: list[str] = []

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return FakeChunkedStream(self, text, conn_options)


class FakeChunkedStream(tts.ChunkedStream):
    def __init__(self, owner: FakeTTS, text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=owner, input_text=text, conn_options=conn_options)
        self._owner = owner

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        self._owner.spoken.append(self.input_text)
        words = max(1, len(self.input_text.split()))
        seconds = scaled(words * WORD_SECONDS / self._owner.speed)
        t = np.arange(int(seconds * TTS_RATE)) / TTS_RATE
        pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=TTS_RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        output_emitter.push(pcm.tobytes())
        output_emitter.flush()


class FakeEngines(Engines):
    """Engines with no model: the fake LLM and voices; sessions built by ``FakeSessions``."""

    def __init__(self, settings: Settings | None = None, llm_: FakeLLM | None = None) -> None:
        super().__init__(settings or Settings(), clip_store=None)
        self.fake_llm = llm_ or FakeLLM()
        self.fake_voices: list[FakeTTS] = []

    @property
    def llm(self) -> llm.LLM[Any]:
        return self.fake_llm

    def voice(
        self, speed: float | None, *, namespace: str | None = None, voice_id: str | None = None
    ) -> tts.TTS[Any]:
        voice = FakeTTS(speed or 1.0)
        self.fake_voices.append(voice)
        # sentence by sentence, as the clip cache streams the real voice
        return tts.StreamAdapter(tts=voice, sentence_tokenizer=tokenize.basic.SentenceTokenizer())


class FakeSessions:
    """A VoiceManager's session builder: each new session hears the next caller."""

    def __init__(self, *callers: Caller) -> None:
        self._callers = list(callers)

    def __call__(
        self,
        engines: Engines,
        config: SessionConfig | None = None,
        *,
        namespace: str | None = None,
        user_away_timeout: float | None = None,
    ) -> AgentSession[Any]:
        caller = self._callers.pop(0)
        config = config or SessionConfig()
        return AgentSession(
            vad=FakeVAD(caller),
            stt=FakeSTT(caller),
            llm=engines.llm,
            tts=SwappableTTS(engines.voice(config.tts_speed, namespace=namespace)),
            turn_handling={
                "turn_detection": "vad",
                "endpointing": {"mode": "fixed", "min_delay": scaled(0.3), "max_delay": scaled(2)},
                "interruption": {
                    "mode": "vad",
                    "min_duration": 0.3,  # reported by the fake VAD in script time
                    "resume_false_interruption": False,
                },
                "preemptive_generation": {"enabled": False},
            },
            session_close_transcript_timeout=0,
            user_away_timeout=scaled(user_away_timeout) if user_away_timeout else None,
        )


def silent_frame(rate: int = 16000) -> rtc.AudioFrame:
    samples = rate // 100
    return rtc.AudioFrame(bytes(samples * 2), rate, 1, samples)
