"""Idle callers: prompt a caller who has gone quiet, and end the call if they stay away.

livekit-agents marks the user "away" after ``user_away_timeout`` seconds in which neither
side spoke (``AgentSession(user_away_timeout=...)``, set from ``USER_IDLE_S``). From there
this watcher takes over, because the framework's timer does not run again while the user
is away: it says the prompt, waits ``after_s`` for the caller to come back, and repeats up
to ``prompts`` times; then it says the goodbye (not interruptible) and ends the session.
Any speech from the caller (the state leaving "away") resets the count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from livekit.agents import AgentSession

from agent.log import logger
from agent.obs.metrics import IDLE_PROMPTS
from agent.settings import Settings

IDLE_REASON = "caller idle"


@dataclass(frozen=True, slots=True)
class IdlePolicy:
    after_s: float  # 0: never
    prompts: int
    prompt: str
    goodbye: str

    @classmethod
    def from_settings(cls, s: Settings) -> IdlePolicy:
        return cls(s.user_idle_s, s.user_idle_prompts, s.user_idle_prompt, s.user_idle_goodbye)

    @property
    def enabled(self) -> bool:
        return self.after_s > 0


class IdleWatch:
    """Watches one voice session (see the module docstring); ``end`` closes it."""

    def __init__(
        self, session: AgentSession[Any], policy: IdlePolicy, end: Callable[[], Awaitable[None]]
    ) -> None:
        self._session = session
        self._policy = policy
        self._end = end
        self._back = asyncio.Event()  # the caller left "away"
        self._task: asyncio.Task[None] | None = None
        self.unanswered = 0
        session.on("user_state_changed", self._on_user_state)

    def _on_user_state(self, ev: Any) -> None:
        if ev.new_state == "away":
            self._back.clear()
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._prompt_until_back(), name="idle.prompt")
        else:
            if ev.new_state == "speaking":
                self.unanswered = 0
            self._back.set()

    async def _prompt_until_back(self) -> None:
        policy = self._policy
        while not self._back.is_set():
            if self.unanswered >= policy.prompts:
                logger.info("caller idle: ending the session", extra={"prompts": self.unanswered})
                handle = self._session.say(policy.goodbye, allow_interruptions=False)
                await handle.wait_for_playout()
                await self._end()
                return
            self.unanswered += 1
            IDLE_PROMPTS.inc()
            logger.info("caller idle: prompting", extra={"prompt": self.unanswered})
            await self._session.say(policy.prompt).wait_for_playout()
            try:
                await asyncio.wait_for(self._back.wait(), policy.after_s)
            except TimeoutError:
                pass

    def close(self) -> None:
        """Stop watching (the session closed); the ending task itself runs to its end."""
        self._session.off("user_state_changed", self._on_user_state)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
