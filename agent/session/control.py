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

Every handler answers bad input with an error event and never raises into the room. Error
events carry a code and a fixed, safe message (never exception text). What a participant may
do is the tenant's policy (agent/session/participant_policy.py): only attended participants get a
session, config keys outside the policy are refused, and each participant's messages are
rate limited (a relay counts once per recipient; over the limit, one ``rate_limited`` error,
then silence until the budget refills).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from livekit import rtc

from agent import json_input
from agent.log import logger
from agent.session.config import ConfigError, SessionConfig, parse_config
from agent.session.participant_policy import MessageBudget, ParticipantPolicy
from agent.session.transport import CHAT_TOPIC, CONFIG_TOPIC, EVENTS_TOPIC, RELAY_TOPIC, Transport
from agent.session.voice_manager import SessionRefused, VoiceManager
from plugins.smart_turn import HybridTurnOptions

MAX_CHAT_CHARS = 4000
MAX_RELAY_BYTES = 15_000
MAX_RELAY_TARGETS = 16


def describe(config: SessionConfig) -> dict[str, Any]:
    out = asdict(config)
    if config.turn is not None:
        out["turn"] = asdict(config.turn)
    return {k: v for k, v in out.items() if v is not None}


class ControlChannel:
    def __init__(
        self,
        manager: VoiceManager,
        transport: Transport,
        base_turn: HybridTurnOptions,
        policy: ParticipantPolicy | None = None,
    ) -> None:
        self._manager = manager
        self._transport = transport
        self._base_turn = base_turn
        self._policy = policy or ParticipantPolicy()
        self._budget = MessageBudget(self._policy.messages_per_minute)
        self._told_limited: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    async def _allowed(self, sender: str, cost: int = 1) -> bool:
        """Spend the sender's message budget; over it, say so once and drop."""
        if self._budget.take(sender, cost):
            self._told_limited.discard(sender)
            return True
        if sender not in self._told_limited:
            self._told_limited.add(sender)
            await self._error(sender, "rate_limited", "too many messages; slow down")
        return False

    def _lock(self, identity: str) -> asyncio.Lock:
        # one participant's messages are applied in order; others are not held up
        return self._locks.setdefault(identity, asyncio.Lock())

    async def _error(
        self, to: str, code: str, message: str, field: str | None = None
    ) -> dict[str, Any]:
        event = {"type": "error", "code": code, "message": message, "field": field}
        await self._transport.send_data(event, topic=EVENTS_TOPIC, to=[to])
        return event

    async def on_config(self, sender: str, payload: bytes | str) -> dict[str, Any] | None:
        if not await self._allowed(sender):
            return None
        try:
            update = parse_config(payload, self._base_turn)
            self._policy.check_config(update, self._manager.room_config)
            self._manager.check_config(update)
        except ConfigError as e:
            return await self._error(sender, e.code, e.message, e.field)
        async with self._lock(sender):
            try:
                if sender in self._manager.sessions:
                    config = await self._manager.configure(sender, update)
                else:
                    config = (await self._manager.attach(sender, config=update)).config
            except SessionRefused as e:
                return await self._error(sender, e.code, e.message)
            except Exception:  # e.g. a noise filter that fails to load: logged, not sent
                logger.exception("config not applied", extra={"participant": sender})
                return await self._error(sender, "apply_failed", "the config could not be applied")
        event = {"type": "config.applied", "config": describe(config)}
        await self._transport.send_data(event, topic=EVENTS_TOPIC, to=[sender])
        return event

    async def on_chat(self, sender: str, text: str) -> str | None:
        if not text.strip() or not await self._allowed(sender):
            return None
        if len(text) > MAX_CHAT_CHARS:
            await self._error(sender, "too_large", f"chat text over {MAX_CHAT_CHARS} characters")
            return None
        async with self._lock(sender):
            try:
                reply = await self._manager.reply_to_text(sender, text)
            except SessionRefused as e:
                await self._error(sender, e.code, e.message)
                return None
            except Exception:
                logger.exception("chat reply failed", extra={"participant": sender})
                await self._error(sender, "reply_failed", "the reply failed")
                return None
            entry = self._manager.sessions.get(sender)
        if reply and entry is not None and entry.mode == "text":
            await self._transport.send_text(reply, topic=CHAT_TOPIC, to=[sender])
        return reply

    async def on_relay(self, sender: str, payload: bytes | str) -> dict[str, Any] | None:
        if not await self._allowed(sender):
            return None
        if len(payload) > MAX_RELAY_BYTES:
            return await self._error(sender, "too_large", f"relay over {MAX_RELAY_BYTES} bytes")
        try:
            message = json_input.loads(payload, what="relay message")
        except json_input.JsonInputError as e:
            return await self._error(sender, "invalid_json", str(e))
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
        targets = sorted(set(to))
        if len(targets) > 1 and not await self._allowed(sender, cost=len(targets) - 1):
            return None
        await self._transport.send_data(
            {"from": sender, "data": message["data"]}, topic=RELAY_TOPIC, to=targets
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
