"""Keeping a session talking when a provider misbehaves.

- :class:`CircuitBreaker`: after ``failures`` consecutive failures the LLM endpoint is not
  called for ``reset_after_s``; then one trial request decides whether it closes again.
- :class:`ResilientLLM`: any ``llm.LLM[Any]`` behind a first-token timeout and the breaker. A
  timeout, an error or an open breaker becomes a short spoken apology (a fixed sentence, so
  the clip cache serves it) and the session goes on with the next turn.

The TTS side uses livekit-agents' ``tts.FallbackAdapter`` with espeak-ng
(``plugins/espeak``) behind the primary voice (see ``Engines.session``).
Each fallback is logged and counted in ``voice_fallbacks_total{stage, kind}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectOptions,
    APIStatusError,
    NotGivenOr,
    llm,
    utils,
)
from livekit.agents.llm import ChatContext, Tool

from agent.log import logger
from agent.obs.metrics import FALLBACKS

APOLOGY = "Sorry, I'm having trouble answering right now. Please try again in a moment."


# 4xx answers that still say something about the endpoint: a timeout, a conflict, a rate limit
_ENDPOINT_4XX = {408, 409, 429}


def is_request_fault(error: BaseException) -> bool:
    """Whether ``error`` says this request was bad (too long for the model's context, an
    invalid field: HTTP 4xx), as opposed to the endpoint failing (timeouts, connection
    errors, 5xx). Only endpoint failures count towards the circuit breaker: one session's
    oversized prompt must not cut every other session off the LLM."""
    if isinstance(error, APIStatusError):
        return 400 <= error.status_code < 500 and error.status_code not in _ENDPOINT_4XX
    kind = getattr(error, "kind", None)  # the inference process's error frame
    return kind == "bad_request"


class CircuitBreaker:
    """closed → (``failures`` in a row) → open → (``reset_after_s``) → half-open: one trial;
    success closes it, failure opens it again."""

    def __init__(
        self,
        *,
        failures: int = 3,
        reset_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_after_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def record_success(self) -> None:
        if self._opened_at is not None:
            logger.info("LLM endpoint recovered; circuit closed")
        self._consecutive, self._opened_at, self._trial_running = 0, None, False

    def release_trial(self) -> None:
        """A call that proved nothing either way (the request was bad): a half-open breaker
        lets the next call be the trial."""
        self._trial_running = False

    def record_failure(self) -> None:
        self._consecutive += 1
        self._trial_running = False
        if self._opened_at is not None or self._consecutive >= self.failures:
            if self.state != "open":
                logger.warning(
                    "LLM endpoint failing; circuit open",
                    extra={"failures": self._consecutive, "retry_in_s": self.reset_after_s},
                )
            self._opened_at = self._clock()


class ResilientLLM(llm.LLM[Any]):
    def __init__(
        self,
        inner: llm.LLM[Any],
        *,
        first_token_timeout_s: float = 10.0,
        breaker: CircuitBreaker | None = None,
        apology: str = APOLOGY,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.first_token_timeout_s = first_token_timeout_s
        self.breaker = breaker or CircuitBreaker()
        self.apology = apology
        inner.on("metrics_collected", lambda m: self.emit("metrics_collected", m))

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.inner.provider

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **kwargs: Any,
    ) -> ResilientLLMStream:
        return ResilientLLMStream(
            self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options, kwargs=kwargs
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class ResilientLLMStream(llm.LLMStream):
    def __init__(
        self,
        owner: ResilientLLM,
        *,
        chat_ctx: ChatContext,
        tools: list[Tool],
        conn_options: APIConnectOptions,
        kwargs: dict[str, NotGivenOr[Any]],
    ) -> None:
        super().__init__(owner, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._owner = owner
        self._kwargs = kwargs

    def _say(self, text: str) -> None:
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id=utils.shortuuid(), delta=llm.ChoiceDelta(role="assistant", content=text)
            )
        )

    def _fallback(self, kind: str, error: BaseException | None = None) -> None:
        FALLBACKS.labels("llm", kind).inc()
        logger.warning(
            "LLM fallback: apology spoken",
            extra={
                "kind": kind,
                "error": type(error).__name__ if error else None,
                "breaker": self._owner.breaker.state,
            },
        )
        self._say(self._owner.apology)

    async def _run(self) -> None:
        breaker = self._owner.breaker
        if not breaker.allow():
            self._fallback("circuit_open")
            return
        # one quick retry covers a pooled connection that died with a restarted server;
        # beyond that the breaker is the retry policy (the first-token timeout bounds both)
        inner_opts = APIConnectOptions(
            max_retry=1, retry_interval=0.2, timeout=self._owner.first_token_timeout_s
        )
        stream = self._owner.inner.chat(
            chat_ctx=self._chat_ctx, tools=self._tools, conn_options=inner_opts, **self._kwargs
        )
        started = False
        try:
            async with stream:
                iterator = stream.__aiter__()
                try:
                    chunk = await asyncio.wait_for(
                        iterator.__anext__(), self._owner.first_token_timeout_s
                    )
                except StopAsyncIteration:
                    breaker.record_success()
                    return
                started = True
                self._event_ch.send_nowait(chunk)
                async for chunk in iterator:
                    self._event_ch.send_nowait(chunk)
        except TimeoutError as e:
            breaker.record_failure()
            self._fallback("timeout", e)
            return
        except Exception as e:
            if is_request_fault(e):
                breaker.release_trial()  # says nothing about the endpoint's health
                self._fallback("bad_request", e)
                return
            breaker.record_failure()
            # mid-reply too: what was said stays said, and the user hears why it stopped
            self._fallback("cut_short" if started else "error", e)
            return
        breaker.record_success()
