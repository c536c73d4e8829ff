"""The session control channel: config messages, typed chat and relayed data.

Topics (see ``docs/session-control.md``):

- ``agent.config``: a participant sends a config message (JSON); the agent applies it to that
  participant's session and answers on ``agent.events`` with
  ``{"type": "config.applied", "config": {...}}`` or
  ``{"type": "error", "code": ..., "message": ..., "field": ...}``. A message that fails
  changes nothing.
- ``lk.chat``: typed text (LiveKit text streams) goes to the sender's session; a text-mode
  session answers on ``lk.chat`` (a voice session speaks its answer instead).
- ``agent.relay``: ``{"to": ["identity", ...], "data": <any JSON>}`` is forwarded to those
  participants as ``{"from": <sender>, "data": ...}``.

Every handler answers bad input with an error event and never raises into the room.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Any

from livekit import rtc

from plugins.smart_turn import HybridTurnOptions

from .log import logger
from .session_config import ConfigError, SessionConfig, parse_config
from .transport import CHAT_TOPIC, CONFIG_TOPIC, EVENTS_TOPIC, RELAY_TOPIC, Transport
from .voice_manager import VoiceManager

MAX_CHAT_CHARS = 4000
MAX_RELAY_BYTES = 15_000
MAX_RELAY_TARGETS = 32


def describe(config: SessionConfig) -> dict[str, Any]:
    out = asdict(config)
    if config.turn is not None:
        out["turn"] = asdict(config.turn)
    return {k: v for k, v in out.items() if v is not None}


class ControlChannel:
    def __init__(
        self, manager: VoiceManager, transport: Transport, base_turn: HybridTurnOptions
    ) -> None:
        self._manager = manager
        self._transport = transport
        self._base_turn = base_turn
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, identity: str) -> asyncio.Lock:
        # one participant's messages are applied in order; others are not held up
        return self._locks.setdefault(identity, asyncio.Lock())

    async def _error(self, to: str, code: str, message: str, field: str | None = None) -> dict:
        event = {"type": "error", "code": code, "message": message, "field": field}
        await self._transport.send_data(event, topic=EVENTS_TOPIC, to=[to])
        return event

    async def on_config(self, sender: str, payload: bytes | str) -> dict[str, Any]:
        try:
            update = parse_config(payload, self._base_turn)
        except ConfigError as e:
            return await self._error(sender, e.code, e.message, e.field)
        async with self._lock(sender):
            try:
                if sender in self._manager.sessions:
                    config = await self._manager.configure(sender, update)
                else:
                    config = (await self._manager.attach(sender, config=update)).config
            except Exception as e:  # e.g. a noise filter that fails to load
                logger.exception("config not applied", extra={"participant": sender})
                return await self._error(sender, "apply_failed", str(e) or type(e).__name__)
        event = {"type": "config.applied", "config": describe(config)}
        await self._transport.send_data(event, topic=EVENTS_TOPIC, to=[sender])
        return event

    async def on_chat(self, sender: str, text: str) -> str | None:
        if not text.strip():
            return None
        if len(text) > MAX_CHAT_CHARS:
            await self._error(sender, "too_large", f"chat text over {MAX_CHAT_CHARS} characters")
            return None
        async with self._lock(sender):
            try:
                reply = await self._manager.reply_to_text(sender, text)
            except Exception as e:
                logger.exception("chat reply failed", extra={"participant": sender})
                await self._error(sender, "reply_failed", type(e).__name__)
                return None
            entry = self._manager.sessions.get(sender)
        if reply and entry is not None and entry.mode == "text":
            await self._transport.send_text(reply, topic=CHAT_TOPIC, to=[sender])
        return reply

    async def on_relay(self, sender: str, payload: bytes | str) -> dict[str, Any] | None:
        if len(payload) > MAX_RELAY_BYTES:
            return await self._error(sender, "too_large", f"relay over {MAX_RELAY_BYTES} bytes")
        try:
            message = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return await self._error(sender, "invalid_json", "relay message is not valid JSON")
        if not isinstance(message, dict) or set(message) - {"to", "data"} or "data" not in message:
            return await self._error(
                sender, "invalid_type", 'relay message must be {"to": [...], "data": ...}'
            )
        to = message.get("to")
        if (
            not isinstance(to, list)
            or not to
            or len(to) > MAX_RELAY_TARGETS
            or not all(isinstance(t, str) and t for t in to)
        ):
            return await self._error(
                sender, "invalid_value", f"to must list 1 to {MAX_RELAY_TARGETS} identities", "to"
            )
        await self._transport.send_data(
            {"from": sender, "data": message["data"]}, topic=RELAY_TOPIC, to=to
        )
        return None

    # --- room binding ----------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def bind(self, room: rtc.Room) -> None:
        def on_data(packet: rtc.DataPacket) -> None:
            sender = packet.participant.identity if packet.participant else None
            if sender is None:
                return
            if packet.topic == CONFIG_TOPIC:
                self._spawn(self.on_config(sender, packet.data))
            elif packet.topic == RELAY_TOPIC:
                self._spawn(self.on_relay(sender, packet.data))

        async def read_chat(reader: rtc.TextStreamReader, sender: str) -> None:
            text = await reader.read_all()
            await self.on_chat(sender, text)

        room.on("data_received", on_data)
        room.register_text_stream_handler(
            CHAT_TOPIC, lambda reader, sender: self._spawn(read_chat(reader, sender))
        )

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
