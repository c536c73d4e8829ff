"""Per-session engine slots that a config message can change while the session runs.

livekit-agents fixes a session's TTS and RoomIO's noise filter when the session starts; these
wrappers are what it is given instead, and what the session controller swaps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from livekit import rtc
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, tts

from plugins.noise import NoiseFilter


class SwitchableNoiseFilter(rtc.FrameProcessor[rtc.AudioFrame]):
    """A noise-filter slot: ``off`` passes frames through, otherwise the current filter."""

    def __init__(self, make: Callable[[str], NoiseFilter | None], name: str) -> None:
        self._make = make
        self.name = name
        self._inner = make(name)

    def switch(self, name: str) -> None:
        """Build the new filter first, so a filter that fails to load changes nothing."""
        new = self._make(name)
        old, self._inner, self.name = self._inner, new, name
        if old is not None:
            old.close()

    @property
    def enabled(self) -> bool:
        return self._inner is not None

    @enabled.setter
    def enabled(self, value: bool) -> None:  # RoomIO may toggle it; the slot decides
        pass

    def _process(self, frame: rtc.AudioFrame) -> rtc.AudioFrame:
        inner = self._inner
        return inner.process(frame) if inner is not None else frame

    def process(self, frame: rtc.AudioFrame) -> rtc.AudioFrame:
        return self._process(frame)

    def _close(self) -> None:
        self.close()

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
            self._inner = None


class SwappableTTS(tts.TTS[Any]):
    """A TTS slot. Streams are opened on the current engine; its metrics are re-emitted
    here, where the session listens."""

    def __init__(
        self,
        inner: tts.TTS[Any],
        *,
        release: Callable[[tts.TTS[Any]], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=True),
            sample_rate=inner.sample_rate,
            num_channels=inner.num_channels,
        )
        self._inner = inner
        # what ends a per-session engine when it is swapped out or the session closes: a
        # fallback chain subscribes to the shared voices and lives until it is closed
        self._release = release
        self._retired: list[tts.TTS[Any]] = []
        self._forward = lambda m: self.emit("metrics_collected", m)
        self._errors = lambda e: self.emit("error", e)
        inner.on("metrics_collected", self._forward)
        inner.on("error", self._errors)

    @property
    def inner(self) -> tts.TTS[Any]:
        return self._inner

    def swap(self, inner: tts.TTS[Any]) -> None:
        if inner.sample_rate != self.sample_rate or inner.num_channels != self.num_channels:
            raise ValueError("a swapped TTS must keep the sample rate and channels")
        self._inner.off("metrics_collected", self._forward)
        self._inner.off("error", self._errors)
        inner.on("metrics_collected", self._forward)
        inner.on("error", self._errors)
        self._retired.append(self._inner)  # streams may still run on it until aclose
        self._inner = inner

    @property
    def model(self) -> str:
        return self._inner.model

    @property
    def provider(self) -> str:
        return self._inner.provider

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return self._inner.synthesize(text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.SynthesizeStream:
        return self._inner.stream(conn_options=conn_options)

    def prewarm(self) -> None:
        self._inner.prewarm()

    async def aclose(self) -> None:
        """Detach from the engines (they belong to the process) and release this
        session's own chains."""
        self._inner.off("metrics_collected", self._forward)
        self._inner.off("error", self._errors)
        if self._release is not None:
            for engine in [*self._retired, self._inner]:
                await self._release(engine)
        self._retired.clear()

    def __getattr__(self, name: str) -> Any:
        # e.g. CachedTTS.lookups for simulate's cache report
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)
