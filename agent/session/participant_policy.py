"""What a room participant may do, as the tenant's policy allows.

Trust runs operator (settings) > tenant (token, dispatch metadata) > room participant. A
participant's config message may set only the keys the policy lists (by default not the
persona, and not audio in a room the backend made text-only); each participant's messages
(config, chat, relay) are rate limited; a room holds at most so many sessions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.session.config import ConfigError, SessionConfig
from agent.settings import Settings
from auth.limits import TenantPolicy, parse_participant_config


@dataclass(frozen=True, slots=True)
class ParticipantPolicy:
    """Attributes:
    config_keys: what participants' config messages may set (auth.limits keys).
    messages_per_minute: config/chat/relay messages per participant per minute.
    max_sessions: sessions one room may hold.
    greeting: said when a voice session starts (the tenant's, else GREETING).
    memory: whether conversations are remembered across sessions.
    """

    config_keys: frozenset[str] = frozenset({"audio", "noise_filter", "tts", "stt", "turn"})
    messages_per_minute: int = 60
    max_sessions: int = 8
    greeting: str | None = None  # the tenant's (GREETING when it sets none)
    memory: bool = False  # the tenant keeps conversations across sessions

    @classmethod
    def for_tenant(cls, settings: Settings, tenant: str) -> ParticipantPolicy:
        """The worker's defaults, with the tenant's own entry in TENANT_LIMITS on top."""
        keys = parse_participant_config(settings.participant_config, "PARTICIPANT_CONFIG")
        per_minute = settings.participant_messages_per_minute
        max_sessions = settings.max_sessions_per_room
        limits = TenantPolicy.parse(settings.tenant_limits).entry(tenant)
        greeting, memory = settings.greeting or None, settings.memory_enabled
        if limits is not None:
            if limits.greeting is not None:
                greeting = limits.greeting
            if limits.memory is not None:
                memory = limits.memory
            if limits.participant_config is not None:
                keys = limits.participant_config
            if limits.participant_messages_per_minute is not None:
                per_minute = limits.participant_messages_per_minute
            if limits.max_sessions_per_room is not None:
                max_sessions = limits.max_sessions_per_room
        return cls(frozenset(keys), per_minute, max_sessions, greeting, memory)

    def check_config(self, update: SessionConfig, room: SessionConfig) -> None:
        """Raise ``ConfigError("forbidden_field")`` for the first key of ``update`` that a
        participant may not set in a room configured as ``room``."""
        wanted = {
            "audio": update.audio is not None,
            "noise_filter": update.noise_filter is not None,
            "instructions": update.instructions is not None,
            "tts": update.tts_speed is not None or update.tts_voice is not None,
            "stt": update.stt_language is not None,
            "turn": update.turn is not None,
            "greeting": update.greeting is not None,
            "recording": update.recording is not None,
        }
        field_names = {"instructions": "llm.instructions"}
        for key, present in wanted.items():
            if present and key not in self.config_keys:
                name = field_names.get(key, key)
                raise ConfigError("forbidden_field", f"{name} is not yours to set here", name)
        text_room = room.audio is False
        if update.audio is True and text_room and "text_room_audio" not in self.config_keys:
            raise ConfigError("forbidden_field", "this room is text-only", "audio")


@dataclass
class MessageBudget:
    """A token bucket per participant: ``per_minute`` messages, refilled continuously, with
    bursts up to half a minute's worth (at least 5)."""

    per_minute: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def burst(self) -> float:
        return float(max(5, self.per_minute // 2))

    def take(self, identity: str, cost: int = 1) -> bool:
        """Spend ``cost`` messages of ``identity``'s budget; False when there are not
        enough (nothing is spent then)."""
        now = self.clock()
        tokens, last = self._buckets.get(identity, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.per_minute / 60.0)
        if cost > tokens:
            self._buckets[identity] = (tokens, now)
            return False
        self._buckets[identity] = (tokens - cost, now)
        return True

    def forget(self, identity: str) -> None:
        self._buckets.pop(identity, None)
