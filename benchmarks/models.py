"""The model manager's costs: load time per model, and sessions' latency while a load runs.

- **Load time**: each model loaded cold in this process, ``--repeats`` times (median):
  the packaged Piper voice, whisper tiny.en and, with the multilingual extra, whisper base.
- **Latency during a load**: one session keeps synthesizing a sentence with a resident
  voice while the model manager loads other voices on its loader thread (a resident cap of
  1, so every request for the other two voices loads one). The sentence's synthesis time
  is measured with no load running (baseline) and while loads run, in the same run, and
  reported as medians and their ratio.

    python benchmarks/models.py --repeats 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import machine  # noqa: E402


def _median_load(load: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model = load()
        times.append(time.perf_counter() - started)
        del model
    return statistics.median(times)


def load_times(cache: Path, repeats: int) -> dict[str, float]:
    from plugins.piper import PiperTTS
    from plugins.whisper import WhisperSTT
    from plugins.whisper.models import place_packaged_base

    figures = {
        "piper_joe_medium": _median_load(lambda: PiperTTS(use_cuda=False), repeats),
        "whisper_tiny_en": _median_load(lambda: WhisperSTT(device="cpu"), repeats),
    }
    try:
        base = place_packaged_base(cache / "models" / "whisper")
    except Exception as e:  # the multilingual extra is not installed
        print(f"whisper base: not measured ({e})")
    else:
        figures["whisper_base"] = _median_load(
            lambda: WhisperSTT(model=str(base), device="cpu"), repeats
        )
    return figures


async def latency_during_loads(root: Path, sentences: int) -> dict[str, Any]:
    from agent.models.voice_library import voice_manager
    from agent.models.voices import VoiceCatalog
    from agent.settings import Settings
    from plugins.piper import PiperTTS, packaged_voice

    model, config = packaged_voice()
    folder = root / "models" / "piper"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("a", "b"):
        (folder / f"en_US-{name}-medium.onnx").symlink_to(model)
        (folder / f"en_US-{name}-medium.onnx.json").write_text(config.read_text())
    settings = Settings(
        cache_path=root, tts_device="cpu", models_resident_cap=1, models_min_residency_s=0
    )
    manager = voice_manager(
        settings, VoiceCatalog.discover(model, config, folder, espeak_rate=22050)
    )
    resident = PiperTTS(use_cuda=False)  # the session's voice, already loaded
    opts = resident.current_options()

    async def one() -> float:
        started = time.perf_counter()
        await resident.synthesize_sentence("The train leaves at nine tonight.", opts)
        return time.perf_counter() - started

    await one()  # warm up
    baseline = [await one() for _ in range(sentences)]
    loads = 0

    async def keep_loading(stop: asyncio.Event) -> None:
        nonlocal loads
        voices = ["piper:en_US-a-medium", "piper:en_US-b-medium"]
        while not stop.is_set():
            async with manager.use(voices[loads % 2]):
                loads += 1

    stop = asyncio.Event()
    loader = asyncio.create_task(keep_loading(stop))
    await asyncio.sleep(0.05)
    during = [await one() for _ in range(sentences)]
    stop.set()
    await loader
    manager.close()
    b, d = statistics.median(baseline), statistics.median(during)
    return {
        "baseline_ms": round(b * 1000, 1),
        "during_load_ms": round(d * 1000, 1),
        "ratio": round(d / b, 2),
        "loads_meanwhile": loads,
        "n": sentences,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="loads per model (median)")
    parser.add_argument("--sentences", type=int, default=20, help="syntheses per condition")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        loads = load_times(Path(tmp), args.repeats)
        latency = asyncio.run(latency_during_loads(Path(tmp), args.sentences))
    for name, seconds in loads.items():
        print(f"load {name}: {seconds * 1000:.0f} ms (median of {args.repeats})")
    print(
        f"synthesis of one sentence with a resident voice: {latency['baseline_ms']} ms alone, "
        f"{latency['during_load_ms']} ms while the manager loads other voices "
        f"({latency['ratio']}x, medians, n={latency['n']}, {latency['loads_meanwhile']} loads)"
    )
    print(
        json.dumps(
            {
                "benchmark": "models",
                "load_s": {k: round(v, 3) for k, v in loads.items()},
                "repeats": args.repeats,
                "latency_during_load": latency,
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
