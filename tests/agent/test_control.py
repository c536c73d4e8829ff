"""Session control: config messages, the audio=false relay mode, mode switches."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agent.models.engines import Engines, turn_options
from agent.session.control import ControlChannel
from agent.session.participant_policy import ParticipantPolicy
from agent.session.transport import CHAT_TOPIC, EVENTS_TOPIC, RELAY_TOPIC, MemoryTransport
from agent.session.voice_manager import SessionIO, VoiceManager
from agent.settings import Settings
from agent.sim.io import PacedAudioInput, RecordingAudioOutput
from auth.limits import PARTICIPANT_CONFIG_KEYS
from tests.audio_fixtures import speak, trim_silence, wer

INSTRUCTIONS = "You are a helpful assistant. Answer in one short sentence."


def channel(
    engines: Engines, policy: ParticipantPolicy | None = None
) -> tuple[VoiceManager, ControlChannel, MemoryTransport]:
    manager = VoiceManager(engines, instructions=INSTRUCTIONS)
    transport = MemoryTransport()
    control = ControlChannel(manager, transport, turn_options(engines.settings), policy)
    return manager, control, transport


@pytest.fixture
def text_only_engines(cache_dir: Path, llama_instance) -> Engines:
    """Engines with nothing loaded: whatever a session touches gets created on demand."""
    from plugins.llama import LlamaLLM

    settings = Settings(cache_path=cache_dir)
    return Engines(
        settings,
        llm=LlamaLLM(model_instance=llama_instance, max_tokens=30, seed=42),
        clip_store=None,
    )


async def test_audio_false_relays_text_and_data_without_audio_engines(
    text_only_engines: Engines,
) -> None:
    manager, control, transport = channel(text_only_engines)
    try:
        ack = await control.on_config("bob", '{"audio": false}')
        assert ack == {"type": "config.applied", "config": {"audio": False}}
        reply = await control.on_chat("bob", "What is the capital of France?")
        assert reply and "paris" in reply.lower(), reply
        assert [s.body for s in transport.on(CHAT_TOPIC)] == [reply]
        assert transport.on(CHAT_TOPIC)[0].to == ["bob"]

        # a participant who never configured anything and just types gets a text session
        assert await control.on_chat("carol", "Say hello.")

        await control.on_relay("bob", json.dumps({"to": ["carol"], "data": {"move": "e4"}}))
        relayed = transport.on(RELAY_TOPIC)
        assert [(r.to, r.body) for r in relayed] == [
            (["carol"], {"from": "bob", "data": {"move": "e4"}})
        ]
        session = manager.sessions["bob"].session
    finally:
        await manager.aclose()
    # no VAD, STT, TTS, turn model or noise filter was created, no audio in or out
    assert text_only_engines.loaded() == {"llm"}
    assert session.vad is None and session.stt is None and session.tts is None
    assert session.input.audio is None and session.output.audio is None


async def test_bad_messages_get_structured_errors_and_change_nothing(
    text_only_engines: Engines,
) -> None:
    manager, control, transport = channel(text_only_engines)
    try:
        await control.on_config("bob", '{"audio": false}')
        before = manager.sessions["bob"].config
        bad_configs = {
            "{oops": "invalid_json",
            '{"audio": "no"}': "invalid_type",
            '{"voice": "x"}': "unknown_field",
            '{"llm": {"instructions": 5}}': "invalid_type",
            '{"tts": {"speed": 9}}': "invalid_value",
            '{"turn": {"threshold": -1}}': "invalid_value",
            "{" + '"a": 1, ' * 5000 + '"b": 2}': "too_large",
        }
        for raw, code in bad_configs.items():
            event = await control.on_config("bob", raw)
            assert event["type"] == "error" and event["code"] == code, (raw[:30], event)
        assert manager.sessions["bob"].config == before
        bad_relays = [
            b"\xff\xfe",
            b"[1]",
            b'{"to": "carol", "data": 1}',
            b'{"to": []}',
            b'{"to": ["x"], "data": 1, "extra": 2}',
            b"x" * 20_000,
        ]
        for raw in bad_relays:
            event = await control.on_relay("bob", raw)
            assert event is not None and event["type"] == "error", raw[:20]
        assert not transport.on(RELAY_TOPIC)
        errors = transport.on(EVENTS_TOPIC)
        assert all(set(e.body) == {"type", "code", "message", "field"} for e in errors[1:])
        # and the session still works
        assert await control.on_chat("bob", "Say hello.")
    finally:
        await manager.aclose()


@pytest.mark.slow
async def test_live_config_and_switching_audio_off_and_on(engines: Engines) -> None:
    # a tenant whose policy lets participants set everything, the persona included
    manager, control, transport = channel(
        engines, ParticipantPolicy(config_keys=frozenset(PARTICIPANT_CONFIG_KEYS))
    )
    # replies are heard 4x faster: the turns are what is tested, not the listening
    mic, speaker = PacedAudioInput(), RecordingAudioOutput(playout_speed=4)

    async def say(text: str, segments: int) -> None:
        await mic.play_silence(0.3)
        await mic.play(trim_silence(speak(text, rate=16000)), 16000)
        tail = asyncio.create_task(mic.play_silence(60))
        await asyncio.wait_for(speaker.wait_for_segments(segments), 60)
        await asyncio.wait_for(speaker.wait_for_playout(), 60)
        tail.cancel()

    try:
        entry = await manager.attach("alice", SessionIO(mic, speaker))
        first_voice = entry.session.tts.inner
        ack = await control.on_config(
            "alice",
            json.dumps(
                {
                    "noise_filter": "rnnoise",
                    "tts": {"speed": 1.2},
                    "llm": {"instructions": "You are a pirate. Answer in one sentence."},
                    "turn": {
                        "threshold": 0.7,
                        "silence_timeout": 1.5,
                        "decision_pause": 0.4,
                        "min_speech": 0.2,
                    },
                }
            ),
        )
        assert ack["type"] == "config.applied", ack
        entry = manager.sessions["alice"]
        assert entry.noise_filter.name == "rnnoise" and entry.noise_filter.enabled
        assert entry.session.tts.inner is not first_voice  # the faster voice
        assert "pirate" in entry.agent.instructions
        assert entry.session.turn_detection.options.threshold == 0.7
        assert entry.session.options.endpointing["max_delay"] == 1.5
        vad_opts = entry.session.vad.inner._opts
        assert (vad_opts.min_silence_duration, vad_opts.min_speech_duration) == (0.4, 0.2)
        await control.on_config("alice", '{"noise_filter": "off"}')
        await say("What is the capital of France?", 1)

        # voice → text: the conversation goes on by chat
        assert (await control.on_config("alice", '{"audio": false}'))["config"]["audio"] is False
        assert manager.sessions["alice"].mode == "text"
        reply = await control.on_chat("alice", "What did I ask you before?")
        assert reply and transport.on(CHAT_TOPIC)[-1].body == reply
        history = manager.sessions["alice"].agent.chat_ctx.items
        # the voice turn came along (tiny.en may mishear a word of it)
        assert any("capital" in (getattr(i, "text_content", "") or "") for i in history)

        # text → voice: spoken again, history still there
        await control.on_config("alice", '{"audio": true}')
        assert manager.sessions["alice"].mode == "audio"
        await say("Please tell me a fun fact.", 2)
        probe_texts = [
            i.text_content
            for i in manager.sessions["alice"].agent.chat_ctx.items
            if getattr(i, "role", None) == "user"
        ]
    finally:
        await manager.aclose()
    assert wer("Please tell me a fun fact.", probe_texts[-1]) <= 0.2, probe_texts
    assert len(probe_texts) == 3
