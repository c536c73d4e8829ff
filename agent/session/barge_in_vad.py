"""The session's VAD: barge-in at the VAD's own decision, not one window after it.

livekit-agents interrupts the agent from the VAD's per-window ``INFERENCE_DONE`` events once
their speech duration reaches the interruption minimum. Silero reports a window's event
*before* it decides that the window starts speech, so the event that carries the new
speech duration is the next window's: every barge-in came one VAD window (32 ms) after the
VAD had decided, plus the wait for that window's audio. And with the interruption minimum
above the VAD's minimum speech, the agent kept talking for the difference as well.

Here:

- right after ``START_OF_SPEECH`` the stream repeats the decision as an ``INFERENCE_DONE``
  carrying the start's speech duration, so the session can interrupt on the decision itself;
- while the agent speaks, the VAD's minimum speech is the barge-in minimum (a cough over
  the agent's voice is not a turn); otherwise it is the turn's minimum. The VAD's start of
  speech is then the barge-in trigger, and the interruption follows it at once.
"""

from __future__ import annotations

import dataclasses

from livekit import rtc
from livekit.agents import vad
from livekit.plugins import silero


class BargeInVAD(vad.VAD):
    """Silero, with the barge-in minimum while the agent speaks and no window's lag."""

    def __init__(self, inner: silero.VAD, *, min_speech: float, barge_in_min_speech: float):
        super().__init__(capabilities=inner.capabilities)
        self._inner = inner
        self._min_speech = min_speech
        self._barge_in_min_speech = barge_in_min_speech
        self._agent_speaking = False

    @classmethod
    def load(
        cls, *, min_speech_duration: float, min_silence_duration: float, barge_in_min_speech: float
    ) -> BargeInVAD:
        inner = silero.VAD.load(
            min_speech_duration=min_speech_duration, min_silence_duration=min_silence_duration
        )
        assert isinstance(inner, silero.VAD)  # typed as any VAD by the plugin
        return cls(inner, min_speech=min_speech_duration, barge_in_min_speech=barge_in_min_speech)

    @property
    def model(self) -> str:
        return self._inner.model

    @property
    def provider(self) -> str:
        return self._inner.provider

    @property
    def inner(self) -> silero.VAD:
        """The Silero VAD doing the work."""
        return self._inner

    @property
    def min_speech(self) -> float:
        """The minimum speech the VAD asks for now."""
        if self._agent_speaking:
            return max(self._min_speech, self._barge_in_min_speech)
        return self._min_speech

    def agent_speaking(self, speaking: bool) -> None:
        """The agent started or stopped speaking: the minimum follows."""
        if speaking != self._agent_speaking:
            self._agent_speaking = speaking
            self._inner.update_options(min_speech_duration=self.min_speech)

    def update_options(self, *, min_speech_duration: float, min_silence_duration: float) -> None:
        """A new turn policy (config message): its pause, and its minimum outside barge-in."""
        self._min_speech = min_speech_duration
        self._inner.update_options(
            min_speech_duration=self.min_speech, min_silence_duration=min_silence_duration
        )

    def stream(self) -> BargeInStream:
        return BargeInStream(self, self._inner.stream())


class BargeInStream(vad.VADStream):
    """The inner stream's events, each start of speech followed by its ``INFERENCE_DONE``.

    The session listens for VAD metrics on the ``BargeInVAD``: this stream's own monitor
    (livekit's ``VADStream``) reports them from the events it passes on."""

    def __init__(self, owner: BargeInVAD, inner: vad.VADStream) -> None:
        self._inner = inner
        super().__init__(owner)

    # audio goes straight to the inner stream: no extra hop on the way to the decision
    def push_frame(self, frame: rtc.AudioFrame) -> None:
        self._inner.push_frame(frame)

    def flush(self) -> None:
        self._inner.flush()

    def end_input(self) -> None:
        self._inner.end_input()

    async def aclose(self) -> None:
        await self._inner.aclose()
        await super().aclose()

    async def _main_task(self) -> None:
        async for ev in self._inner:
            self._event_ch.send_nowait(ev)
            if ev.type == vad.VADEventType.START_OF_SPEECH:
                self._event_ch.send_nowait(decision_as_inference(ev))


def decision_as_inference(start: vad.VADEvent) -> vad.VADEvent:
    """The start-of-speech decision as the per-window event the session interrupts on
    (no audio of its own: the start event carries the speech; no inference time)."""
    return dataclasses.replace(
        start,
        type=vad.VADEventType.INFERENCE_DONE,
        frames=[],
        speaking=True,
        inference_duration=0.0,
        raw_accumulated_speech=start.speech_duration,
        raw_accumulated_silence=0.0,
    )
