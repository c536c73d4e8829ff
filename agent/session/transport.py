"""How a VoiceManager talks to participants besides audio: chat text, config replies, relayed
data. In a room that is the local participant's text streams and data packets; without one
(``simulate``, tests) it is a recorder with the same interface."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from livekit import rtc

CHAT_TOPIC = "lk.chat"  # LiveKit's standard chat topic
CONFIG_TOPIC = "agent.config"  # participant → agent: config messages
EVENTS_TOPIC = "agent.events"  # agent → participant: acknowledgements and errors
RELAY_TOPIC = "agent.relay"  # participant ↔ participant through the agent


class Transport(Protocol):
    async def send_text(self, text: str, *, topic: str, to: list[str]) -> None: ...

    async def send_data(self, payload: dict[str, Any], *, topic: str, to: list[str]) -> None: ...


class RoomTransport:
    def __init__(self, room: rtc.Room) -> None:
        self._room = room

    async def send_text(self, text: str, *, topic: str, to: list[str]) -> None:
        await self._room.local_participant.send_text(text, topic=topic, destination_identities=to)

    async def send_data(self, payload: dict[str, Any], *, topic: str, to: list[str]) -> None:
        await self._room.local_participant.publish_data(
            json.dumps(payload), reliable=True, topic=topic, destination_identities=to
        )


@dataclass
class Sent:
    kind: str
    topic: str
    to: list[str]
    body: Any


@dataclass
class MemoryTransport:
    """Records what would have been sent."""

    sent: list[Sent] = field(default_factory=list)

    async def send_text(self, text: str, *, topic: str, to: list[str]) -> None:
        self.sent.append(Sent("text", topic, list(to), text))

    async def send_data(self, payload: dict[str, Any], *, topic: str, to: list[str]) -> None:
        self.sent.append(Sent("data", topic, list(to), payload))

    def on(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]
