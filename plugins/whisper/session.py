"""One session's view of the process's shared ``WhisperSTT``.

Every session decodes on the same model (one batcher, one thread), but each needs its own
``stt.STT[Any]`` object: its streams hand their pause text to that session's turn detector, and
its metrics and errors reach that session's listeners only. Closing it never closes the
shared model."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, stt
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer, is_given

from .._common.pause_text import PauseText

if TYPE_CHECKING:
    from .stream import WhisperRecognizeStream
    from .stt import WhisperSTT


class SessionSTT(stt.STT[Any]):
    def __init__(
        self, whisper: WhisperSTT, pause_text: PauseText, language: str | None = "en"
    ) -> None:
        super().__init__(capabilities=whisper.capabilities)
        self._whisper = whisper
        self.pause_text = pause_text
        # "auto": none yet; the first utterance's language is detected and kept here
        self._auto = language == "auto"
        self.language: str | None = None if self._auto else language
        self._streams: weakref.WeakSet[WhisperRecognizeStream] = weakref.WeakSet()

    def _keep_language(self, language: str) -> None:
        self.language = language

    def set_language(self, language: str | None) -> None:
        """A new language for this session (``auto``: detect again), applied to the
        streams already running from their next utterance."""
        self._auto = language == "auto"
        self.language = None if self._auto else language
        for stream in list(self._streams):
            stream.set_language(self.language, self._keep_language if self._auto else None)

    @property
    def model(self) -> str:
        return self._whisper.model

    @property
    def provider(self) -> str:
        return self._whisper.provider

    @property
    def whisper(self) -> WhisperSTT:
        return self._whisper

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> WhisperRecognizeStream:
        detecting = self._auto and self.language is None
        stream = self._whisper.stream_for(
            self,
            pause_text=self.pause_text,
            language=language if is_given(language) else self.language,
            on_language=self._keep_language if detecting else None,
            conn_options=conn_options,
        )
        self._streams.add(stream)
        return stream

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        if not is_given(language) and self.language is not None:
            language = self.language
        return await self._whisper.recognize(buffer, language=language, conn_options=conn_options)

    async def aclose(self) -> None:
        """The shared model outlives every session."""
