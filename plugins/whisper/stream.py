"""The streaming side of ``WhisperSTT``: one stream per session, decoding at every pause.

Whisper re-decodes the whole utterance each time, so when that happens decides the latency.
The stream decodes:

- every ``interim_interval`` while the user speaks (interim transcripts for captions);
- as soon as a pause starts (``PAUSE_DECODE_S`` of unvoiced audio after speech). Its text
  goes out at once as a *preflight* transcript, on which the session starts its LLM and
  TTS preemptively; once the pause has lasted ``FINAL_PAUSE_S`` with no speech since, the
  same text is sent as a *final* transcript: the session has the words when its
  end-of-turn detector decides (which reads them too, through ``PauseText``) and commits
  the turn without waiting for a decode. A turn with pauses gets one final per pause; the
  session joins them;
- at the flush only when something was said since the last final and no decode covers it.

Trailing silence after the last voiced sample changes nothing a decode would say, so a
decode made during the pause stands for everything said before it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from livekit.agents import APIConnectOptions, stt, utils
from livekit.agents.language import LanguageCode
from livekit.agents.stt import SpeechEventType

from .._common.audio import Float32Array, frame_to_float, is_voiced, to_mono
from .._common.pause_text import PauseText
from .log import logger
from .stt import SAMPLE_RATE, final_event

if TYPE_CHECKING:
    from .stt import WhisperSTT, _STTOptions

# whisper's context is 30 s; older audio in one utterance is dropped rather than grown forever
MAX_UTTERANCE_S = 30.0
# audio kept before the first voiced frame so the onset of the first word is not clipped
PRE_ROLL_S = 0.4
# unvoiced audio after speech that starts a pause decode: longer than the gaps between
# words, short enough that the decode is done when the turn detector decides (~0.3 s)
PAUSE_DECODE_S = 0.1
# a pause decode hears this much silence after the speech (padded with zeros when the pause
# is younger), so the last word does not sound cut off
PAUSE_PAD_S = 0.5
# a pause this long, with its decode done and no speech since, makes that decode a final
# transcript: a hesitation, not a gap between words (the turn detector is asked at 0.3 s)
FINAL_PAUSE_S = 0.25


class _Utterance:
    """Audio since the last flush, trimmed of leading silence and bounded in length.

    Positions are counted in samples pushed since the utterance began, so a decode can say
    which audio it covered even after old audio was dropped."""

    def __init__(self, threshold_dbfs: float) -> None:
        self._threshold_dbfs = threshold_dbfs
        self._pre_roll: deque[Float32Array] = deque()
        self._pre_roll_samples = 0
        self._chunks: deque[Float32Array] = deque()
        self._samples = 0
        self.voiced_since: float | None = None
        self.pushed = 0  # samples in the utterance so far (after the pre-roll)
        self.voiced_end = 0  # ``pushed`` at the end of the last voiced chunk
        self.quiet = 0  # unvoiced samples since then

    def push(self, mono16k: Float32Array) -> None:
        voiced = is_voiced(mono16k, self._threshold_dbfs)
        if self.voiced_since is None and not voiced:
            self._pre_roll.append(mono16k)
            self._pre_roll_samples += mono16k.size
            while self._pre_roll_samples - self._pre_roll[0].size >= PRE_ROLL_S * SAMPLE_RATE:
                self._pre_roll_samples -= self._pre_roll.popleft().size
            return
        if self.voiced_since is None:
            self.voiced_since = time.monotonic()
            self._chunks.extend(self._pre_roll)
            self._samples += self._pre_roll_samples
            self.pushed += self._pre_roll_samples
            self._pre_roll.clear()
            self._pre_roll_samples = 0
        self._chunks.append(mono16k)
        self._samples += mono16k.size
        self.pushed += mono16k.size
        if voiced:
            self.voiced_end = self.pushed
            self.quiet = 0
        else:
            self.quiet += mono16k.size
        while self._samples - self._chunks[0].size >= MAX_UTTERANCE_S * SAMPLE_RATE:
            self._samples -= self._chunks.popleft().size

    @property
    def voiced(self) -> bool:
        return self.voiced_since is not None

    @property
    def pausing(self) -> bool:
        return self.voiced and self.quiet >= PAUSE_DECODE_S * SAMPLE_RATE

    def audio(self) -> Float32Array:
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(list(self._chunks))

    def clear(self) -> None:
        self._chunks.clear()
        self._samples = 0
        self.voiced_since = None
        self.pushed = self.voiced_end = self.quiet = 0


@dataclass
class _Decode:
    """One decode of the utterance up to ``covers`` (an ``_Utterance.pushed`` position)."""

    covers: int
    task: asyncio.Task[str]
    at_pause: bool
    epoch: int  # finals sent before it started: a final since then makes it stale

    def text(self) -> str | None:
        """The decoded text, or None while running or after a failure."""
        if not self.task.done() or self.task.cancelled() or self.task.exception() is not None:
            return None
        return self.task.result()


class WhisperRecognizeStream(stt.RecognizeStream):
    def __init__(
        self,
        *,
        stt: stt.STT[Any],
        whisper: WhisperSTT,
        opts: _STTOptions,
        conn_options: APIConnectOptions,
        pause_text: PauseText | None = None,
        on_language: Callable[[str], None] | None = None,
    ) -> None:
        # the base class resamples every pushed frame to 16 kHz for us; ``stt`` receives the
        # stream's metrics and errors (the session's own STT), ``whisper`` decodes
        super().__init__(stt=stt, conn_options=conn_options, sample_rate=SAMPLE_RATE)
        self._whisper = whisper
        self._opts = opts
        self._pause_text = pause_text
        self._on_language = on_language if opts.language is None else None
        self._heard_language: str | None = None
        self.finals_sent = 0
        self.finals_at_pause = 0  # finals sent during a pause, before any flush
        self.finals_reused = 0  # flushes answered by a finished decode, no decode of their own
        self.sent_events: dict[SpeechEventType, int] = {}  # interims and preflights sent

    async def _run(self) -> None:
        utterance = _Utterance(self._opts.voice_threshold_dbfs)
        self._running: _Decode | None = None  # at most one decode in flight per stream
        self._latest: tuple[int, str] | None = None  # (covers, text): newest finished decode
        self._pause_final: str | None = None  # a fresh pause decode waiting for FINAL_PAUSE_S
        last_interim = 0.0
        self._request_id = utils.shortuuid()

        def send_final(text: str) -> None:
            self.finals_sent += 1
            audio_s = utterance.pushed / SAMPLE_RATE
            if text and self._on_language is not None and self._heard_language:
                # "auto": the language the first words were decoded in is kept for every
                # later utterance of the session (no detection pass any more)
                self._keep(self._heard_language)
            if text:  # audio that said nothing yet (the onset of a word) stays for the next
                utterance.clear()
            self._running, self._latest, self._pause_final = None, None, None
            if self._pause_text is not None:
                self._pause_text.finalized(text)
            self._event_ch.send_nowait(
                final_event(self._request_id, text, self._opts.language, audio_s)
            )
            self._request_id = utils.shortuuid()

        def final_at_pause() -> None:
            if self._pause_final is not None and utterance.quiet >= FINAL_PAUSE_S * SAMPLE_RATE:
                self.finals_at_pause += 1
                send_final(self._pause_final)

        def finished(decode: _Decode) -> None:
            # runs as soon as the decode ends, not at the next frame: the input may have
            # stopped (a muted or departed caller) while the pause decode ran
            if self._running is decode:
                self._running = None
            text = decode.text()
            if text is None or decode.epoch != self.finals_sent:  # failed, or already final
                return
            if self._latest is None or decode.covers >= self._latest[0]:
                self._latest = (decode.covers, text)
            if decode.covers >= utterance.voiced_end:
                # covers all that was said: final once the pause lasts (an interim that
                # happened to end with the speech counts as much as a pause decode)
                self._pause_final = text
                final_at_pause()
                if self._pause_final is not None:
                    # the pause is younger than FINAL_PAUSE_S: say the words now as a
                    # preflight, on which the session starts its reply preemptively (the
                    # final that follows with the same words keeps that reply)
                    self._emit(stt.SpeechEventType.PREFLIGHT_TRANSCRIPT, text)
            elif self._pause_final is None:
                self._emit(stt.SpeechEventType.INTERIM_TRANSCRIPT, text)

        def start(at_pause: bool) -> None:
            audio = utterance.audio()
            if at_pause:  # a speech end cut short reads as unfinished ("...") to whisper
                pad = int(PAUSE_PAD_S * SAMPLE_RATE) - utterance.quiet
                if pad > 0:
                    audio = np.concatenate([audio, np.zeros(pad, dtype=np.float32)])
            task = asyncio.create_task(self._transcribe(audio))
            decode = _Decode(utterance.pushed, task, at_pause, self.finals_sent)
            task.add_done_callback(lambda _: finished(decode))
            self._running = decode

        try:
            async for item in self._input_ch:
                if isinstance(item, self._FlushSentinel):
                    running, latest = self._running, self._latest
                    self._running = None
                    sent = self.finals_sent
                    text = await self._final_text(utterance, running, latest)
                    # the pause final may have gone out while the flush waited for its decode
                    send_final(text if self.finals_sent == sent else "")
                    continue

                voiced_before = utterance.voiced_end
                utterance.push(to_mono(frame_to_float(item)))
                if utterance.voiced_end != voiced_before:  # speaking again: pause text is stale
                    self._pause_final = None
                    if self._pause_text is not None:
                        self._pause_text.invalidate()
                final_at_pause()
                if not utterance.voiced:
                    continue
                running, latest = self._running, self._latest
                covered = max(latest[0] if latest else 0, running.covers if running else 0)
                if utterance.pausing and covered < utterance.voiced_end:
                    if running is not None:  # an interim of older audio: the pause matters more
                        running.task.cancel()
                    start(at_pause=True)
                    continue
                now = time.monotonic()
                if (
                    self._opts.interim_interval > 0
                    and running is None
                    and not utterance.pausing
                    and now - last_interim >= self._opts.interim_interval
                ):
                    last_interim = now
                    start(at_pause=False)
        finally:
            if self._running is not None:
                self._running.task.cancel()

    async def _final_text(
        self, utterance: _Utterance, running: _Decode | None, latest: tuple[int, str] | None
    ) -> str:
        """The text since the last final: a decode that already covers every voiced sample,
        else a new one; empty when nothing was said since."""
        if not utterance.voiced:
            if running is not None:
                running.task.cancel()
            return ""
        if latest is not None and latest[0] >= utterance.voiced_end:
            if running is not None:
                running.task.cancel()
            self.finals_reused += 1
            return latest[1]
        if running is not None and running.covers >= utterance.voiced_end:
            await asyncio.wait({running.task})  # our own cancellation still propagates
            text = running.text()
            if text is not None:
                self.finals_reused += 1
                return text
            # failed or cancelled: decode again below; a real failure repeats and surfaces
        elif running is not None:
            running.task.cancel()
        return await self._transcribe(utterance.audio())

    def set_language(self, language: str | None, on_language: Callable[[str], None] | None) -> None:
        """Decode in ``language`` from now on (None with ``on_language``: detect it on the
        next utterance and tell ``on_language``)."""
        self._opts.language = language
        self._on_language = on_language if language is None else None
        self._heard_language = None

    def _keep(self, language: str) -> None:
        self._opts.language = language
        if self._on_language is not None:
            self._on_language(language)
        self._on_language = None
        logger.info("language detected", extra={"language": language})

    async def _transcribe(self, audio: np.ndarray) -> str:
        """A decode in the stream's language; while it is still to be detected, each
        decode detects it first (whisper's detection over its full window: decoding a
        short window with no language lets it translate instead of transcribe)."""
        if self._on_language is None or self._opts.language is not None:
            return await self._whisper.transcribe(audio, self._opts.language)
        language = await self._whisper.detect_language(audio)
        if language:
            self._heard_language = language
        return await self._whisper.transcribe(audio, language)

    def _emit(self, kind: stt.SpeechEventType, text: str) -> None:
        if not text:
            return
        self.sent_events[kind] = self.sent_events.get(kind, 0) + 1
        self._event_ch.send_nowait(
            stt.SpeechEvent(
                type=kind,
                request_id=self._request_id,
                alternatives=[
                    stt.SpeechData(language=LanguageCode(self._opts.language or ""), text=text)
                ],
            )
        )


__all__ = ["WhisperRecognizeStream"]
