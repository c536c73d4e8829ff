"""Running engine calls in a thread pool without losing the caller's context."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def in_executor(
    executor: Executor, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> asyncio.Future[T]:
    """``loop.run_in_executor`` that carries the caller's contextvars into the thread (the
    session's log context, for one), as ``asyncio.to_thread`` does for the default pool."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return loop.run_in_executor(executor, functools.partial(ctx.run, fn, *args, **kwargs))
