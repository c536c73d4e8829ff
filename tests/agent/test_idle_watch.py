"""The idle-caller policy on its own, with a stand-in session (milliseconds, no models)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from livekit import rtc

from agent.conversation.idle import IdlePolicy, IdleWatch


@dataclass
class StateChange:
    old_state: str
    new_state: str


class Handle:
    async def wait_for_playout(self) -> None:
        await asyncio.sleep(0)


class StandInSession(rtc.EventEmitter[str]):
    """What IdleWatch uses of an AgentSession: user-state events and ``say``."""

    def __init__(self) -> None:
        super().__init__()
        self.said: list[tuple[str, bool]] = []

    def say(self, text: str, allow_interruptions: bool = True) -> Handle:
        self.said.append((text, allow_interruptions))
        return Handle()

    def user(self, old: str, new: str) -> None:
        self.emit("user_state_changed", StateChange(old, new))


POLICY = IdlePolicy(after_s=0.05, prompts=2, prompt="Still there?", goodbye="Bye!")


async def test_prompts_then_goodbye_then_the_end() -> None:
    session = StandInSession()
    ended = asyncio.Event()

    async def end() -> None:
        ended.set()

    watch = IdleWatch(session, POLICY, end)  # type: ignore[arg-type]
    session.user("listening", "away")
    await asyncio.wait_for(ended.wait(), 5)
    assert session.said == [("Still there?", True), ("Still there?", True), ("Bye!", False)]
    watch.close()


async def test_speech_resets_the_count_and_other_states_stop_the_prompting() -> None:
    session = StandInSession()
    ended: list[bool] = []

    async def end() -> None:
        ended.append(True)

    watch = IdleWatch(session, POLICY, end)  # type: ignore[arg-type]
    session.user("listening", "away")
    await asyncio.sleep(0.01)
    assert session.said == [("Still there?", True)] and watch.unanswered == 1
    session.user("away", "speaking")  # the caller answers
    assert watch.unanswered == 0
    await asyncio.sleep(0.2)  # no more prompts while they are back
    assert len(session.said) == 1 and not ended
    # away again: the count starts over, two prompts before any goodbye
    session.user("listening", "away")
    await asyncio.sleep(0.02)
    assert session.said[-1] == ("Still there?", True) and not ended
    watch.close()  # the session closed: nothing more is said
    await asyncio.sleep(0.2)
    assert not ended and all(text == "Still there?" for text, _ in session.said)


async def test_no_prompts_means_goodbye_at_once() -> None:
    session = StandInSession()
    ended = asyncio.Event()

    async def end() -> None:
        ended.set()

    IdleWatch(session, IdlePolicy(0.05, 0, "?", "Bye!"), end)  # type: ignore[arg-type]
    session.user("listening", "away")
    await asyncio.wait_for(ended.wait(), 5)
    assert session.said == [("Bye!", False)]
