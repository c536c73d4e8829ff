"""Voices: the catalog (``GET /v1/voices``), a voice switched mid-call by a config message,
and unknown voices or unheard languages refused without changing anything."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from agent.models.engines import Engines, turn_options
from agent.models.voices import VoiceCatalog
from agent.session.control import ControlChannel
from agent.session.factory import clip_cache_of
from agent.session.participant_policy import ParticipantPolicy
from agent.session.transport import MemoryTransport
from agent.session.voice_manager import SessionIO, VoiceManager
from agent.settings import Settings
from agent.sim.io import PacedAudioInput, RecordingAudioOutput
from auth.limits import PARTICIPANT_CONFIG_KEYS
from plugins.piper import packaged_voice
from tests.auth.test_limits_processes import free_port, wait_for_port
from tests.auth.test_serve_isolation import bearer, start_serve
from tests.auth.tokens import AUDIENCE, HS_SECRET
from tests.fake_livekit import FakeLiveKit

SLOW = "piper:en_US-slow-medium"


def drop_in_voices(root: Path) -> Path:
    """What an operator drops under CACHE_PATH/models/piper/: a good second voice (the
    packaged weights with a slower phoneme length: a real model speaking different audio)
    and three broken pairs."""
    model, config = packaged_voice()
    folder = root / "models" / "piper"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "en_US-slow-medium.onnx").symlink_to(model)
    slow = json.loads(config.read_text())
    slow["inference"]["length_scale"] = 1.6
    (folder / "en_US-slow-medium.onnx.json").write_text(json.dumps(slow))
    (folder / "not-a-model.onnx").write_bytes(b"this is not an onnx model\n" * 100)
    (folder / "not-a-model.onnx.json").write_text(config.read_text())
    (folder / "bad-config.onnx").symlink_to(model)
    (folder / "bad-config.onnx.json").write_text("{ not json")
    (folder / "no-config.onnx").symlink_to(model)
    return root


def test_the_catalog_lists_dropped_in_voices_and_skips_broken_pairs(tmp_path: Path) -> None:
    model, config = packaged_voice()
    catalog = VoiceCatalog.discover(
        model, config, drop_in_voices(tmp_path) / "models" / "piper", espeak_rate=22050
    )
    ids = {v.id for v in catalog.all()}
    assert catalog.default == "piper:en_US-joe-medium"
    assert {catalog.default, SLOW, "espeak:de", "espeak:fr"} <= ids
    # English is a Piper voice's: espeak-ng's English is not offered beside it
    assert not any(i.startswith("espeak:en") for i in ids)
    skipped = " ".join(catalog.problems)
    for name in ("not-a-model.onnx", "bad-config.onnx", "no-config.onnx"):
        assert name in skipped and f"piper:{name.removesuffix('.onnx')}" not in ids


@pytest.fixture
async def serve_with_voices(tmp_path: Path) -> AsyncIterator[str]:
    fake = FakeLiveKit()
    await fake.start()
    port = free_port()
    env = dict(
        os.environ,
        CACHE_PATH=str(drop_in_voices(tmp_path)),
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        AUTH_JWT_SECRET=HS_SECRET,
        AUTH_AUDIENCE=AUDIENCE,
        LIVEKIT_URL=fake.url.replace("ws://", "http://"),
        LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET="a-livekit-secret-of-forty-characters-000",
        LOG_LEVEL="WARNING",
    )
    proc = start_serve(env)
    try:
        await asyncio.to_thread(wait_for_port, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 20)
        await fake.aclose()


async def test_get_voices_lists_the_packaged_voice_and_espeak_languages(
    serve_with_voices: str,
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{serve_with_voices}/v1/voices") as r:
            assert r.status == 401  # a tenant's token is needed
        async with http.get(f"{serve_with_voices}/v1/voices", headers=bearer("acme")) as r:
            assert r.status == 200
            body = await r.json()
    voices = {v["id"]: v for v in body["voices"]}
    assert body["default"] == "piper:en_US-joe-medium"
    assert voices["piper:en_US-joe-medium"]["engine"] == "piper"
    assert voices[SLOW]["sample_rate"] == 22050
    espeak = [v for v in voices.values() if v["engine"] == "espeak"]
    assert len(espeak) >= 2 and {"de", "fr"} <= {v["language"] for v in espeak}
    assert len(body["skipped"]) == 3


@pytest.fixture
def voice_engines(
    tmp_path: Path, cache_dir: Path, whisper_stt, piper_tts, smart_turn_model, llama_instance
):
    """The shared models, with a CACHE_PATH holding the dropped-in voices and a clip cache."""
    from plugins.llama import LlamaLLM

    root = drop_in_voices(tmp_path)
    for name in ("smart-turn", "smollm2"):  # the other assets, as download-files places them
        (root / "models" / name).symlink_to(cache_dir / "models" / name)
    settings = Settings(cache_path=root, noise_filter="off")
    engines = Engines(
        settings,
        stt=whisper_stt,
        piper=piper_tts,
        turn_model=smart_turn_model,
        llm=LlamaLLM(model_instance=llama_instance, max_tokens=20, seed=42),
    )
    yield engines
    engines.voices.close()


def _audio(segment) -> np.ndarray:
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in segment.frames])


async def test_a_config_message_switches_the_voice_for_the_next_sentence(
    voice_engines: Engines,
) -> None:
    manager = VoiceManager(voice_engines, instructions="You are helpful.")
    control = ControlChannel(
        manager,
        MemoryTransport(),
        turn_options(voice_engines.settings),
        ParticipantPolicy(config_keys=frozenset(PARTICIPANT_CONFIG_KEYS)),
    )
    # heard 4x faster: the audio is compared, not listened to
    mic, speaker = PacedAudioInput(), RecordingAudioOutput(playout_speed=4)
    line = "The train leaves at nine."

    async def say() -> None:
        handle = manager.sessions["alice"].session.say(line)
        await asyncio.wait_for(handle.wait_for_playout(), 60)

    try:
        await manager.attach("alice", SessionIO(mic, speaker))
        await say()
        ack = await control.on_config("alice", json.dumps({"tts": {"voice": SLOW}}))
        assert ack is not None and ack["type"] == "config.applied", ack
        assert ack["config"]["tts_voice"] == SLOW
        await say()  # the same words, now in the new voice
        await say()  # again: the new voice's clip comes from the cache
        cache = clip_cache_of(manager.sessions["alice"].session.tts)
        assert cache is not None
        lookups = list(cache.lookups)
        manager_voices = voice_engines.voices.manager.resident()
    finally:
        await manager.aclose()
    first, second, third = (_audio(s) for s in speaker.segments[:3])
    # a different voice: 1.6x the phoneme length, so clearly longer audio
    assert len(second) > 1.3 * len(first)
    np.testing.assert_array_equal(second, third)
    # the second voice was loaded by the model manager (the default voice is pinned)
    assert manager_voices == [SLOW]
    # cache rules: the switched voice has its own key; its repeat is a hit
    assert [lookup.hit for lookup in lookups][-2:] == [False, True]


async def test_unknown_voices_and_unheard_languages_change_nothing(
    voice_engines: Engines,
) -> None:
    manager = VoiceManager(voice_engines, instructions="You are helpful.")
    transport = MemoryTransport()
    control = ControlChannel(
        manager,
        transport,
        turn_options(voice_engines.settings),
        ParticipantPolicy(config_keys=frozenset(PARTICIPANT_CONFIG_KEYS)),
    )
    try:
        entry = await manager.attach("bob", SessionIO(PacedAudioInput(), RecordingAudioOutput()))
        voice_before, config_before = entry.session.tts.inner, entry.config
        for message, code, field in (
            (
                {"tts": {"voice": "piper:nobody"}, "noise_filter": "rnnoise"},
                "unknown_voice",
                "tts.voice",
            ),
            ({"stt": {"language": "de"}}, "unsupported_language", "stt.language"),  # tiny.en
            ({"stt": {"language": "german"}}, "invalid_value", "stt.language"),
        ):
            event = await control.on_config("bob", json.dumps(message))
            assert event is not None
            assert (event["type"], event["code"], event["field"]) == ("error", code, field), event
        entry = manager.sessions["bob"]
        assert entry.session.tts.inner is voice_before and entry.config == config_before
        assert entry.noise_filter is not None and entry.noise_filter.name == "off"
        # English stays allowed on the English-only model; an espeak voice is a voice too
        ok = await control.on_config(
            "bob", '{"stt": {"language": "en"}, "tts": {"voice": "espeak:de"}}'
        )
        assert ok is not None and ok["type"] == "config.applied", ok
        assert manager.sessions["bob"].session.tts.inner is not voice_before
    finally:
        await manager.aclose()
