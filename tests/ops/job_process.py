"""A stand-in job process: one voice turn and one barge-in through the VoiceManager, with
the real engines, writing its metrics to PROMETHEUS_MULTIPROC_DIR (set by the caller)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


async def main(cache: str) -> None:
    from agent.models.engines import Engines
    from agent.session.voice_manager import SessionIO, VoiceManager
    from agent.settings import Settings
    from agent.sim.io import PacedAudioInput, RecordingAudioOutput
    from tests.audio_fixtures import speak, trim_silence

    settings = Settings(cache_path=Path(cache), llm_max_tokens=20, aec_warmup_s=0)
    engines = Engines.load(settings)
    manager = VoiceManager(engines, instructions="Answer in one short sentence.")
    mic, speaker = PacedAudioInput(), RecordingAudioOutput()
    attached = await manager.attach("caller", SessionIO(mic, speaker))
    # a voice turn
    await mic.play_silence(0.3)
    await mic.play(trim_silence(speak("What is the capital of France?", rate=16000)), 16000)
    tail = asyncio.create_task(mic.play_silence(30))
    await asyncio.wait_for(speaker.wait_for_segments(1), 60)
    await asyncio.wait_for(speaker.wait_for_playout(), 60)
    tail.cancel()
    # a barge-in
    handle = attached.session.say(
        "Here is a long announcement about the opening hours of every shop in the town, "
        "which goes on for quite a while so that there is time to interrupt it."
    )
    await asyncio.wait_for(speaker.wait_for_segments(2), 30)
    await mic.play_silence(0.5)
    await mic.play(trim_silence(speak("Stop, please.", rate=16000)), 16000)
    tail = asyncio.create_task(mic.play_silence(5))
    await asyncio.wait_for(handle.wait_for_playout(), 30)
    tail.cancel()
    await manager.aclose()
    print("interrupted" if handle.interrupted else "not interrupted", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
