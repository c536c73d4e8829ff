"""The session config message parser: strict, all-or-nothing, structured errors."""

from __future__ import annotations

import pytest

from agent.session.config import ConfigError, SessionConfig, parse_config
from plugins.smart_turn import HybridTurnOptions

BASE = HybridTurnOptions()


def test_full_message() -> None:
    cfg = parse_config(
        '{"noise_filter": "rnnoise", "llm": {"instructions": "Be brief."},'
        ' "tts": {"speed": 1.2}, "turn": {"threshold": 0.7}}',
        BASE,
    )
    assert cfg.noise_filter == "rnnoise" and cfg.instructions == "Be brief."
    assert cfg.tts_speed == 1.2
    assert cfg.turn == HybridTurnOptions(threshold=0.7)  # the rest stays at the base


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        ("{oops", "invalid_json", None),
        ('"text"', "invalid_type", None),
        ('{"voice": "x"}', "unknown_field", "voice"),
        ('{"tts": {"sped": 1}}', "unknown_field", "tts.sped"),
        ('{"tts": {"speed": "fast"}}', "invalid_type", "tts.speed"),
        ('{"tts": {"speed": true}}', "invalid_type", "tts.speed"),
        ('{"tts": {"speed": 9}}', "invalid_value", "tts.speed"),
        ('{"turn": {"threshold": NaN}}', "invalid_type", "turn.threshold"),
        ('{"noise_filter": "krisp"}', "invalid_value", "noise_filter"),
        ('{"llm": "hi"}', "invalid_type", "llm"),
        ('{"llm": {"instructions": ""}}', "invalid_type", "llm.instructions"),
        ("{" + '"a":1,' * 5000 + '"b":2}', "too_large", None),
    ],
)
def test_errors_are_structured(raw: str, code: str, field: str | None) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw, BASE)
    assert err.value.as_dict()["code"] == code
    assert err.value.field == field


def test_merge_keeps_what_the_update_leaves_out() -> None:
    room = SessionConfig(instructions="Front desk.", tts_speed=1.1)
    merged = room.merged(SessionConfig(noise_filter="off"))
    assert merged == SessionConfig(noise_filter="off", instructions="Front desk.", tts_speed=1.1)
