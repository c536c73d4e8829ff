"""Smart Turn v3 as a livekit-agents streaming turn detector, plus the hybrid turn policy.

The session pushes every input frame into the detector's stream; when the VAD has seen a
short pause the session asks for a prediction, and the detector scores the last 8 s of
audio in a worker thread. The hybrid policy operators asked for maps onto the session's
own machinery:

- the model decides after a short pause (``decision_pause``, the VAD's silence before it
  reports end of speech): P(complete) >= ``threshold`` ends the turn after ``min_delay``;
- when the model keeps saying "not done", ``silence_timeout`` of silence ends it anyway
  (the session's ``max_delay``);
- speech shorter than ``min_speech`` never opens, so never ends, a turn (the VAD's
  ``min_speech_duration``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypedDict

import numpy as np
import soxr
from livekit import rtc
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, EndpointingOptions
from livekit.agents.inference.eot.base import MIN_SILENCE_DURATION_MS
from livekit.agents.language import LanguageCode
from livekit.agents.voice.turn import TurnDetectionEvent

from .._common.audio import Float32Array, frame_to_float, is_voiced, to_mono
from .._common.pause_text import PauseText
from .batcher import TurnBatcher
from .features import SAMPLE_RATE, WINDOW_SAMPLES
from .log import logger
from .model import SmartTurnModel
from .text import TextVerdict

# livekit-agents asks a streaming detector for its verdict once the VAD has heard this much
# silence (its MIN_SILENCE_DURATION_MS), before its own end of speech
ASKED_AT_SILENCE_S = MIN_SILENCE_DURATION_MS / 1000
# a frame at least this loud (RMS) is voiced: where the detector's own pause clock starts
# (the STT's trimming level, plugins/whisper/stt.py)
VOICE_LEVEL_DBFS = -50.0


class VADOptions(TypedDict):
    """The keyword arguments of ``silero.VAD.load`` / ``update_options`` a policy sets."""

    min_speech_duration: float
    min_silence_duration: float


@dataclass(frozen=True, slots=True)
class HybridTurnOptions:
    """Thresholds of the hybrid end-of-turn policy (seconds, probability).

    Attributes:
        threshold: P(complete) below this means "not done yet".
        decision_pause: silence after speech before the model is consulted.
        min_delay: extra wait after a "done" verdict (0 ends the turn at once).
        silence_timeout: total silence that ends a turn the model calls unfinished.
        min_speech: shorter speech is ignored (coughs, clicks, a stray "uh").
        prediction_timeout: how long the session waits for a verdict before going on.
        text_weight: share of the transcript's verdict in P(complete) when the session's
            pause text is available (0: audio alone, the Smart Turn model's verdict).
        text_wait: longest wait for the pause's transcript before judging on audio alone
            (the whole verdict must come within ``prediction_timeout``, or the session
            decides without one).
        text_confirm: a text verdict at least this sure that the sentence is finished ends
            the turn after ``text_confirm_pause`` of silence even when the voice sounds
            unfinished, instead of waiting for ``silence_timeout`` (1: never).
        text_confirm_pause: that silence, in seconds (speech resumed before it keeps the
            turn open, as at any other pause).
        text_confirm_min_audio: ... unless the voice is this sure it goes on (its verdict
            below this: a misheard fragment, "a table for four and" heard as "... four
            ends.", reads finished while the voice plainly continues).
        early_pause: quiet (the signal under ``VOICE_LEVEL_DBFS``) after speech at which the
            detector starts its verdict on its own; the session asks later (after 0.2 s of
            silence by its VAD, which hears the end of a word ~0.15 s late) and gets that
            verdict when it says "done" and no voiced audio came since; a "not done" is
            judged again on the audio the session asks about. 0: only when asked.
    """

    threshold: float = 0.5
    decision_pause: float = 0.3
    min_delay: float = 0.0
    silence_timeout: float = 2.0
    min_speech: float = 0.25
    prediction_timeout: float = 1.5
    text_weight: float = 0.5
    text_wait: float = 0.8
    text_confirm: float = 0.9
    text_confirm_pause: float = 0.8
    text_confirm_min_audio: float = 0.05
    early_pause: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must be within [0, 1]")
        if not 0.0 <= self.text_weight <= 1.0:
            raise ValueError("text_weight must be within [0, 1]")
        if not 0.0 <= self.text_confirm <= 1.0:
            raise ValueError("text_confirm must be within [0, 1]")
        if not 0.0 <= self.text_confirm_min_audio <= 1.0:
            raise ValueError("text_confirm_min_audio must be within [0, 1]")
        for name in (
            "decision_pause",
            "min_delay",
            "silence_timeout",
            "min_speech",
            "prediction_timeout",
            "text_wait",
            "text_confirm_pause",
            "early_pause",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.silence_timeout < self.min_delay:
            raise ValueError("silence_timeout must be >= min_delay")
        if self.text_wait >= self.prediction_timeout:
            raise ValueError("text_wait must be shorter than prediction_timeout")
        if self.text_confirm < 1 and (
            self.text_confirm_pause - self.decision_pause >= self.prediction_timeout
        ):
            raise ValueError("text_confirm_pause must come within prediction_timeout of the pause")

    def text_confirms(self, verdict: TurnVerdict) -> bool:
        """Whether the words alone end this turn (after ``text_confirm_pause``)."""
        return (
            self.text_confirm < 1
            # a silence timeout this short ends the turn first anyway
            and self.text_confirm_pause < self.silence_timeout
            and verdict.text is not None
            and verdict.p_complete < self.threshold
            and verdict.p_audio >= self.text_confirm_min_audio
            and verdict.text.p_complete >= self.text_confirm
        )

    def vad_options(self) -> VADOptions:
        """Keyword arguments for ``silero.VAD.load`` that implement the pause and minimum."""
        return {"min_speech_duration": self.min_speech, "min_silence_duration": self.decision_pause}

    def endpointing(self) -> EndpointingOptions:
        """The session's ``turn_handling["endpointing"]`` for this policy."""
        return {"mode": "fixed", "min_delay": self.min_delay, "max_delay": self.silence_timeout}


def combine(p_audio: float, p_text: float, text_weight: float) -> float:
    """The words can hold a turn open, never close one the voice keeps open.

    A weighted geometric mean, capped at the audio verdict. An average would let one
    confident verdict outvote the other: a falling voice at a mid-sentence pause (audio
    0.97) over words that plainly go on (text 0.18) averages to 0.58, a cut-off; the
    geometric mean gives 0.42, a wait. The cap keeps a complete-looking fragment ("Hello?"
    before "can you tell me...", text 0.91) from ending a turn whose voice says it goes on
    (audio 0.34): Smart Turn is the detector, the text a second opinion."""
    eps = 1e-6
    geometric = math.exp(
        (1 - text_weight) * math.log(max(p_audio, eps)) + text_weight * math.log(max(p_text, eps))
    )
    return float(min(p_audio, geometric))


class TextScorer(Protocol):
    """What judges the pause text (``text.TextTurnScorer``)."""

    async def verdict(self, text: str) -> TextVerdict: ...


@dataclass(frozen=True, slots=True)
class TurnVerdict:
    """One decision's inputs: the combined probability, the audio's, and the text's."""

    p_complete: float
    p_audio: float
    text: TextVerdict | None


class TurnPredictor(Protocol):
    """Whatever scores an utterance: a ``TurnBatcher`` here, or another process."""

    async def predict(self, audio16k: Float32Array) -> float: ...


class SmartTurnDetector:
    """Streaming end-of-turn detector on Smart Turn v3 (satisfies livekit-agents'
    ``_StreamingTurnDetector`` protocol).

    One ``SmartTurnModel`` and one worker thread serve every stream created from it.
    """

    def __init__(
        self,
        model: SmartTurnModel | None,
        *,
        options: HybridTurnOptions | None = None,
        executor: ThreadPoolExecutor | None = None,
        batcher: TurnPredictor | None = None,
        pause_text: PauseText | None = None,
        text_scorer: TextScorer | None = None,
    ) -> None:
        self.options = options or HybridTurnOptions()
        # the session's words at its pause, and what judges them (both or neither)
        self.pause_text = pause_text if text_scorer is not None else None
        self.text_scorer = text_scorer
        self.last_verdict: TurnVerdict | None = None
        # pass the process's batcher so every session's pauses share one model thread and
        # are scored together under load (or a client of the shared inference process)
        if batcher is None:
            if model is None:
                raise ValueError("give a model or a batcher")
            batcher = TurnBatcher(model, executor)
        self._batcher = batcher

    @property
    def model(self) -> str:
        return "smart-turn-v3.2"

    @property
    def provider(self) -> str:
        return "smart-turn"

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> SmartTurnStream:
        return SmartTurnStream(self)

    async def predict(self, audio16k: Float32Array) -> float:
        """P(complete) for one utterance, computed off the event loop."""
        return await self._batcher.predict(audio16k)

    async def judge(self, audio16k: Float32Array) -> TurnVerdict:
        """The audio verdict, combined with the pause text's when there is one in time."""
        audio_task = asyncio.create_task(self.predict(audio16k))
        text: TextVerdict | None = None
        w = self.options.text_weight
        try:
            if self.pause_text is not None and self.text_scorer is not None and w > 0:
                words = await self.pause_text.wait(self.options.text_wait)
                if words is not None:
                    text = await self.text_scorer.verdict(words)
            p_audio = await audio_task
        finally:
            audio_task.cancel()
        p = p_audio if text is None else combine(p_audio, text.p_complete, w)
        verdict = TurnVerdict(p, p_audio, text)
        self.last_verdict = verdict
        return verdict

    async def unlikely_threshold(self, language: LanguageCode | None) -> float | None:
        return self.options.threshold

    async def supports_language(self, language: LanguageCode | None) -> bool:
        return True  # the model is trained on audio of 23 languages and judges prosody


class SmartTurnStream:
    """Per-session audio ring (last 8 s at 16 kHz) and at most one prediction in flight."""

    def __init__(self, detector: SmartTurnDetector) -> None:
        self._detector = detector
        self._chunks: deque[Float32Array] = deque()
        self._samples = 0
        self._resampler: soxr.ResampleStream | None = None
        self._resampler_rate = 0
        self._task: asyncio.Task[None] | None = None
        self._future: asyncio.Future[TurnDetectionEvent] | None = None
        self._closed = False
        self._last_push = 0.0
        # the detector's own pause clock: quiet samples since the last voiced frame, and
        # the wall time that frame ended (None before any voiced audio in this turn)
        self._quiet = 0
        self._voiced_at: float | None = None
        # the verdict started at ``early_pause`` of quiet, reused if the session asks
        # before anyone speaks again
        self._early: asyncio.Future[TurnVerdict] | None = None
        self.early_verdicts_used = 0

    @property
    def model(self) -> str:
        return self._detector.model

    @property
    def provider(self) -> str:
        return self._detector.provider

    @property
    def is_fallback(self) -> bool:
        return False

    @property
    def prediction_timeout(self) -> float:
        return self._detector.options.prediction_timeout

    async def unlikely_threshold(self, language: LanguageCode | None) -> float | None:
        return self._detector.options.threshold

    async def backchannel_threshold(self, language: LanguageCode | None) -> float | None:
        return None

    async def supports_language(self, language: LanguageCode | None) -> bool:
        return True

    def push_audio(self, frame: rtc.AudioFrame) -> None:
        if self._closed or frame.samples_per_channel == 0:
            return
        mono = to_mono(frame_to_float(frame))
        if frame.sample_rate != SAMPLE_RATE:
            if self._resampler is None or self._resampler_rate != frame.sample_rate:
                self._resampler = soxr.ResampleStream(frame.sample_rate, SAMPLE_RATE, 1, "float32")
                self._resampler_rate = frame.sample_rate
            mono = np.asarray(self._resampler.resample_chunk(mono), dtype=np.float32)
        self._chunks.append(mono)
        self._samples += mono.size
        self._last_push = time.time()
        while self._chunks and self._samples - self._chunks[0].size >= WINDOW_SAMPLES:
            self._samples -= self._chunks.popleft().size
        self._clock_pause(mono)

    def _clock_pause(self, mono: Float32Array) -> None:
        """Advance the pause clock; start the early verdict when the pause is old enough."""
        if is_voiced(mono, VOICE_LEVEL_DBFS):
            self._quiet = 0
            self._voiced_at = self._last_push
            self._drop_early()  # it judged a pause that is over
            return
        if self._voiced_at is None:
            return
        self._quiet += mono.size
        early = self._detector.options.early_pause
        if early > 0 and self._early is None and self._quiet >= early * SAMPLE_RATE:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # audio pushed from outside a loop: judged when asked
                return
            self._early = loop.create_task(self._detector.judge(self.audio()))
            # a verdict nobody asks for (speech resumed) must not log as never retrieved
            self._early.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _drop_early(self) -> None:
        if self._early is not None:
            self._early.cancel()
            self._early = None

    def audio(self) -> Float32Array:
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(list(self._chunks))

    def predict(self) -> asyncio.Future[TurnDetectionEvent]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[TurnDetectionEvent] = loop.create_future()
        self.cancel_inference()
        self._future = fut
        audio = self.audio()
        last_speaking = self._last_push
        requested = time.time()
        early = self._early
        if early is not None:
            self.early_verdicts_used += 1
        # when the pause began: the last voiced frame, else (no frame was loud enough for
        # the clock) what the session's VAD implies by asking now
        pause_began = (
            self._voiced_at if self._voiced_at is not None else requested - ASKED_AT_SILENCE_S
        )

        async def run() -> None:
            started = time.perf_counter()
            try:
                verdict = await self._verdict(early, audio)
                if early is not None and verdict.p_complete < self._detector.options.threshold:
                    # the early verdict is trusted when it says "done"; otherwise the voice
                    # gets the longer pause the session asks about, as without one
                    verdict = await self._detector.judge(audio)
                p = verdict.p_complete
                options = self._detector.options
                if options.text_confirms(verdict):
                    # the words say finished, the voice does not: end the turn after the
                    # longer pause rather than the silence timeout; speech resumed before
                    # then cancels this prediction and the session's end of turn with it
                    ends_at = pause_began + options.text_confirm_pause
                    await asyncio.sleep(max(0.0, ends_at - time.time()))
                    p = options.threshold
                logger.debug(
                    "turn verdict",
                    extra={
                        "p_complete": round(p, 3),
                        "p_audio": round(verdict.p_audio, 3),
                        "p_text": round(verdict.text.p_complete, 3) if verdict.text else None,
                        "text_cue": verdict.text.cue if verdict.text else None,
                    },
                )
            except Exception as e:  # surfaced to the session as "no prediction"
                logger.exception("smart turn inference failed")
                if not fut.done():
                    fut.set_exception(e)
                return
            if not fut.done():
                fut.set_result(
                    TurnDetectionEvent(
                        type="eot_prediction",
                        end_of_turn_probability=p,
                        last_speaking_time=last_speaking,
                        detection_delay=time.time() - requested,
                        inference_duration=time.perf_counter() - started,
                    )
                )

        self._task = asyncio.create_task(run(), name="smart_turn.predict")
        return fut

    async def _verdict(
        self, early: asyncio.Future[TurnVerdict] | None, audio: Float32Array
    ) -> TurnVerdict:
        """The early verdict if it stands, else one made now."""
        if early is not None:
            try:
                # shielded: a cancelled request leaves the early verdict for the next one
                return await asyncio.shield(early)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not early.cancelled() or (task is not None and task.cancelling()):
                    raise  # this request was cancelled, not the early verdict
                # a sound loud enough for the pause clock and too short for the VAD:
                # the session still waits for this verdict, so make it now
        return await self._detector.judge(audio)

    def cancel_inference(self, *, timed_out: bool = False) -> None:
        if self._future is not None and not self._future.done():
            self._future.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._future = None
        self._task = None

    def flush(self, reason: str | None = None) -> None:
        """Forget the buffered audio: the next turn is scored on its own speech (and words)."""
        self.cancel_inference()
        self._drop_early()
        self._chunks.clear()
        self._samples = 0
        self._quiet = 0
        self._voiced_at = None
        if self._detector.pause_text is not None:
            self._detector.pause_text.new_turn()

    def end_input(self) -> None:
        self._closed = True

    async def aclose(self) -> None:
        self._closed = True
        task = self._task
        self.cancel_inference()
        self._drop_early()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
