"""The model manager with real Piper voices: the resident cap evicts the least recently used
idle voice (never one in use), the TTL unloads an idle one after its minimum residency, and
in the shared inference process a session whose voice loads waits while others do not."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.models.manager import ModelManager
from agent.models.voice_library import voice_manager
from agent.models.voices import VoiceCatalog
from agent.settings import Settings
from plugins.piper import PiperTTS, packaged_voice

VOICES = ("en_US-one-medium", "en_US-two-medium", "en_US-three-medium")


def three_voices(root: Path) -> Path:
    """Three Piper voices as an operator would drop them in (real models: the packaged
    weights, each with its own config)."""
    model, config = packaged_voice()
    folder = root / "models" / "piper"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(VOICES):
        (folder / f"{name}.onnx").symlink_to(model)
        cfg = json.loads(config.read_text())
        cfg["inference"]["length_scale"] = 1.0 + i / 10
        (folder / f"{name}.onnx.json").write_text(json.dumps(cfg))
    return root


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manager_for(root: Path, clock: Clock, **settings: object) -> ModelManager[PiperTTS]:
    s = Settings(cache_path=three_voices(root), tts_device="cpu", **settings)  # type: ignore[arg-type]
    model, config = packaged_voice()
    catalog = VoiceCatalog.discover(
        model, config, s.cache_path / "models" / "piper", espeak_rate=22050
    )
    manager = voice_manager(s, catalog)
    manager.clock = clock
    return manager


async def speak(manager: ModelManager[PiperTTS], voice: str) -> bytes:
    async with manager.use(f"piper:{voice}") as piper:
        return await piper.synthesize_sentence("Hello.", piper.current_options())


async def test_the_cap_evicts_the_least_recently_used_idle_voice(tmp_path: Path) -> None:
    clock = Clock()
    manager = manager_for(tmp_path, clock, models_resident_cap=2, models_min_residency_s=0)
    one, two, three = (f"piper:{v}" for v in VOICES)
    try:
        await speak(manager, VOICES[0])
        clock.now += 1
        await speak(manager, VOICES[1])
        clock.now += 1
        await speak(manager, VOICES[0])  # one is now more recent than two
        clock.now += 1
        await speak(manager, VOICES[2])
        assert manager.resident() == [one, three]
        assert [(e.model, e.reason) for e in manager.evictions] == [(two, "cap")]

        # a voice in use is never the one to go, even when it is the least recent
        async with manager.use(one) as piper:
            clock.now += 1
            await speak(manager, VOICES[1])  # loads two: three (idle) goes, one stays
            assert sorted(manager.resident()) == [one, two]
            assert len(await piper.synthesize_sentence("Still here.", piper.current_options())) > 0
        assert [e.model for e in manager.evictions] == [two, three]
    finally:
        manager.close()


async def test_the_ttl_unloads_an_idle_voice_after_its_minimum_residency(tmp_path: Path) -> None:
    clock = Clock()
    manager = manager_for(
        tmp_path, clock, models_idle_ttl_s=60, models_min_residency_s=300, models_resident_cap=4
    )
    one = f"piper:{VOICES[0]}"
    try:
        await speak(manager, VOICES[0])
        clock.now += 120  # idle past the TTL, but not resident long enough yet
        assert manager.sweep() == [] and manager.resident() == [one]
        clock.now += 200
        async with manager.use(one):  # in use: never unloaded, whatever its age
            assert manager.sweep() == []
        assert manager.sweep() == []  # just used: not idle for the TTL
        clock.now += 61
        assert manager.sweep() == [one] and manager.resident() == []
        assert manager.evictions[-1].reason == "ttl"
        # it loads again when asked
        assert len(await speak(manager, VOICES[0])) > 0 and manager.resident() == [one]
    finally:
        manager.close()


async def test_a_failed_load_is_not_kept(tmp_path: Path) -> None:
    manager = manager_for(tmp_path, Clock())
    model = tmp_path / "models" / "piper" / f"{VOICES[1]}.onnx"
    model.unlink()
    model.write_bytes(b"\x08" + b"\x00" * 4096)  # looks like ONNX, is not a voice
    try:
        with pytest.raises(Exception, match="Piper could not load"):
            await speak(manager, VOICES[1])
        assert manager.resident() == []
        assert len(await speak(manager, VOICES[0])) > 0  # the others still load
    finally:
        manager.close()


@pytest.mark.slow
async def test_a_session_whose_voice_loads_waits_and_the_others_do_not(
    tmp_path: Path, cache_dir: Path
) -> None:
    """Through the shared inference process: one client asks for a voice not resident
    while another keeps speaking with the default voice."""
    from agent.inference.host import private_address
    from agent.models.engines import Engines
    from agent.models.shared.client import wait_ready

    root = three_voices(tmp_path)
    for name in ("smart-turn", "smollm2"):  # the inference process's other models
        (root / "models" / name).symlink_to(cache_dir / "models" / name)
    address = private_address()
    env = {
        **os.environ,
        "CACHE_PATH": str(root),
        "LOG_LEVEL": "WARNING",
        "MODELS_PRELOAD": f"piper:{VOICES[0]}",
    }
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "agent", "inference", "--address", address],
        env=env,
    )
    try:
        await asyncio.to_thread(wait_ready, address, 120, alive=lambda: proc.poll() is None)
        settings = Settings(cache_path=root)
        engines = Engines.remote(settings, address)
        assert engines.inference is not None
        stats, _ = await engines.inference.call("stats")
        assert stats["voices_resident"] == [f"piper:{VOICES[0]}"]  # MODELS_PRELOAD
        default = engines.voice(None)
        other = engines.voice(None, voice_id=f"piper:{VOICES[2]}")

        async def timed(tts: object, text: str) -> float:
            started = time.perf_counter()
            async with tts.synthesize(text) as stream:  # type: ignore[attr-defined]
                async for _ in stream:
                    pass
            return time.perf_counter() - started

        await timed(default, "Warm up.")
        baseline = [await timed(default, f"Number {i}.") for i in range(4)]
        loading = asyncio.create_task(timed(other, "A voice that must load first."))
        during = []
        while not loading.done():
            during.append(await timed(default, f"Meanwhile {len(during)}."))
        waited = await loading
        again = await timed(other, "A voice that is resident now.")
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 20)
    print(
        f"baseline {baseline}, during the load {during}, loading {waited:.2f} s, then {again:.2f} s"
    )
    assert len(during) >= 2  # the default voice kept answering while the other loaded
    # the session of the loading voice waited for the load; the others did not
    assert max(during) < waited / 2
    assert again < waited / 2
