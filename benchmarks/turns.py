"""Turn taking: does the agent wait through mid-sentence pauses, and answer fast at real ends?

    python benchmarks/turns.py [--cache .cache]

The corpus is generated here, not hand-picked: sentences said by espeak-ng (several voices
and rates) and Piper (noise scales on), half of them with a 0.6-1.5 s pause at a point
where the sentence cannot end (after "to", "the", "is", "and", "because", a half-said
number, a hesitation "um"), half complete. At each pause the detector is asked what the
session would ask: Smart Turn on the audio up to the decision pause, and (for the combined
detector) the text of the pause decode, judged by the text scorer.

Reports, for audio alone (the old detector) and audio + text (the new one): cut-offs (a
paused utterance whose pause ended the turn) and the end-of-turn delay of complete
utterances (decision pause + compute when the detector says done, else the silence
timeout), p50/p95; then the way livekit/eot-bench reports its leaderboard, sweeping the
threshold and the decision pause: the cut-off rate at a 300 / 600 ms mean-latency budget
and the mean latency at a 5 % / 10 % cut-off budget. One table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import cached_speech, machine  # noqa: E402
from plugins.smart_turn.detector import combine  # noqa: E402
from plugins.whisper.stream import FINAL_PAUSE_S, PAUSE_DECODE_S, PAUSE_PAD_S  # noqa: E402

RATE = 16000
# (first part, rest): the pause goes between them, where the sentence cannot end
PAUSED = [
    ("I want to", "order a large pizza with mushrooms"),
    ("The best way to get there is", "probably by bus from the station"),
    ("Can you tell me the", "opening hours of the library"),
    ("I would like to book a table for four and", "a high chair for the baby"),
    ("We are late because", "the train was cancelled this morning"),
    ("My phone number is five five five", "two one two four"),
    ("I was wondering if um", "you could help me with my order"),
    ("Please send the invoice to", "my office address in Berlin"),
    ("The meeting is on", "Thursday at three in the afternoon"),
    ("I need a flight from London to", "New York next Monday"),
    ("Could you remind me about", "the dentist appointment tomorrow"),
    ("What I really want is", "a quiet room with a view of the sea"),
    ("Um so the problem is that", "my card was charged twice"),
    ("I think the best option would be the", "red one with the larger screen"),
    ("Tell me more about", "the weather in Paris this weekend"),
    ("I have been waiting for", "my package for two weeks now"),
]
COMPLETE = [
    "What time does the restaurant open tomorrow?",
    "Can you book a table for two people?",
    "What is the weather like in Paris today?",
    "Please tell me a fun fact about the ocean.",
    "I would like to cancel my subscription.",
    "How much does the blue jacket cost?",
    "My order number is four two seven nine.",
    "Thank you, that is all I needed.",
    "Where is the nearest pharmacy?",
    "I need a taxi to the airport at six.",
    "Could you repeat that please?",
    "The package arrived this morning.",
    "Yes, that works for me.",
    "Is the museum open on Sundays?",
    "I want to change my delivery address.",
    "Set an alarm for seven tomorrow morning.",
]
VOICES = [
    ("espeak", "en-us", 150),
    ("espeak", "en-us+f3", 170),
    ("espeak", "en-us+m3", 135),
    ("piper", "0.667", 1.0),
    ("piper", "0.9", 1.1),
]
DECISION_PAUSES = [0.2, 0.3, 0.5]
SILENCE_TIMEOUT_S = 2.0
THRESHOLD = 0.5
TEXT_CONFIRM, TEXT_CONFIRM_PAUSE_S, TEXT_CONFIRM_MIN_AUDIO = 0.9, 0.8, 0.05
EARLY_PAUSE_S = 0.2


def trim(pcm: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(pcm) > 300)
    return pcm[loud[0] : loud[-1] + 1] if loud.size else pcm


def say(text: str, voice: tuple[str, str, float], piper: object) -> np.ndarray:
    kind, name, rate = voice

    def render() -> np.ndarray:
        if kind == "espeak":
            import subprocess
            import tempfile

            from agent.sim.simulate import read_wav_16k

            with tempfile.TemporaryDirectory() as tmp:
                wav = Path(tmp) / "s.wav"
                cmd = ["espeak-ng", "-v", name, "-s", str(int(rate)), "-w", str(wav), text]
                subprocess.run(cmd, check=True)
                return trim(read_wav_16k(wav))
        from piper import SynthesisConfig

        from plugins._common.audio import resample

        cfg = SynthesisConfig(noise_scale=float(name), noise_w_scale=0.8, length_scale=rate)
        chunks = list(piper.synthesize(text, syn_config=cfg))  # type: ignore[attr-defined]
        audio = np.concatenate([c.audio_float_array for c in chunks])
        pcm = resample(audio.astype(np.float32), chunks[0].sample_rate, RATE)
        return trim((np.clip(pcm, -1, 1) * 32767).astype(np.int16))

    return cached_speech(f"turns {kind} {name} {rate}|{text}", render)


@dataclass
class Item:
    kind: str  # "paused" or "complete"
    text: str
    voice: str
    speech: np.ndarray  # audio up to the pause (paused) or the whole sentence (complete)
    pause_s: float


def corpus(piper: object) -> list[Item]:
    rng = random.Random(17)
    items = []
    for i, (first, _rest) in enumerate(PAUSED):
        voice = VOICES[i % len(VOICES)]
        pause = round(rng.uniform(0.6, 1.5), 2)
        items.append(
            Item("paused", first, f"{voice[0]} {voice[1]}", say(first, voice, piper), pause)
        )
    for i, sentence in enumerate(COMPLETE):
        voice = VOICES[(i + 2) % len(VOICES)]
        items.append(
            Item("complete", sentence, f"{voice[0]} {voice[1]}", say(sentence, voice, piper), 1.5)
        )
    return items


async def score(items: list[Item], cache: Path) -> list[dict[str, object]]:
    from agent.models.engines import Engines
    from agent.settings import Settings

    engines = Engines.load(Settings(cache_path=cache))
    stt, model, text_scorer = engines.stt, engines.turn_model, engines.turn_text
    text_scorer.verdict_now("warm up")
    rows = []
    for item in items:
        silence = np.zeros(int(RATE * max(DECISION_PAUSES)), dtype=np.int16)
        audio = np.concatenate([item.speech, silence]).astype(np.float32) / 32768
        # what the stream decodes at the pause: the speech and PAUSE_PAD_S of silence
        heard = audio[: item.speech.size + int(PAUSE_PAD_S * RATE)]
        t = time.perf_counter()
        words = await stt.transcribe(heard)
        decode_s = time.perf_counter() - t
        t = time.perf_counter()
        verdict = await text_scorer.verdict(words)
        text_s = time.perf_counter() - t
        audio_p, audio_s = {}, {}
        for pause in DECISION_PAUSES:
            end = item.speech.size + int(pause * RATE)
            t = time.perf_counter()
            audio_p[pause] = float(model.predict([audio[:end]])[0])
            audio_s[pause] = time.perf_counter() - t
        rows.append(
            {
                "kind": item.kind,
                "voice": item.voice,
                "said": item.text,
                "heard": words,
                "pause_s": item.pause_s,
                "p_audio": audio_p,
                "p_text": verdict.p_complete,
                "cue": verdict.cue,
                "audio_s": audio_s,
                # the text is ready this long after speech ended: the pause decode starts
                # PAUSE_DECODE_S into the pause, its final goes out at FINAL_PAUSE_S at the
                # earliest, then the text scorer judges it
                "text_ready_s": max(FINAL_PAUSE_S, PAUSE_DECODE_S + decode_s) + text_s,
            }
        )
    return rows


# (text verdict that confirms, silence after which it ends the turn, the least voice
# verdict that allows it): the combined detector's third outcome, where the words say
# "finished" and the voice is unsure
Confirm = tuple[float, float, float] | None


def decide(
    row: dict,
    pause: float,
    threshold: float,
    weight: float,
    confirm: Confirm = None,
    early: float | None = None,
) -> tuple[float | None, float]:
    """(the silence at which the turn ends, None for the silence timeout; and when after
    speech end that is decided, compute included).

    ``early``: the detector's own verdict at that much quiet, kept when it says "done"
    (the turn still ends no sooner than the session's decision pause); else the voice is
    judged again at ``pause``, as the session asks."""
    if early is not None and weight > 0 and early in row["p_audio"]:
        p_early = combine(row["p_audio"][early], row["p_text"], weight)
        if p_early >= threshold:
            ready = max(early + row["audio_s"][early], row["text_ready_s"], pause)
            return pause, ready
    p_audio = row["p_audio"][pause]
    audio_ready = pause + row["audio_s"][pause]
    if weight == 0:
        return (pause if p_audio >= threshold else None), audio_ready
    p = combine(p_audio, row["p_text"], weight)
    ready = max(audio_ready, row["text_ready_s"])
    if p >= threshold:
        return pause, ready
    if confirm is not None and row["p_text"] >= confirm[0] and p_audio >= confirm[2]:
        return confirm[1], max(ready, confirm[1])
    return None, ready


def evaluate(
    rows: list[dict],
    pause: float,
    threshold: float,
    weight: float,
    confirm: Confirm = None,
    early: float | None = None,
) -> dict:
    paused = [r for r in rows if r["kind"] == "paused"]
    complete = [r for r in rows if r["kind"] == "complete"]
    cut = 0
    for r in paused:
        ends_at, _ = decide(r, pause, threshold, weight, confirm, early)
        cut += ends_at is not None and r["pause_s"] > ends_at
    delays = []
    for r in complete:
        ends_at, ready = decide(r, pause, threshold, weight, confirm, early)
        delays.append(ready if ends_at is not None else SILENCE_TIMEOUT_S)
    return {
        "cutoffs": cut,
        "paused": len(paused),
        "cutoff_rate": cut / len(paused),
        "delay_p50_ms": round(statistics.median(delays) * 1000),
        "delay_p95_ms": round(float(np.percentile(delays, 95)) * 1000),
        "delay_mean_ms": round(statistics.mean(delays) * 1000),
    }


def leaderboard(
    rows: list[dict], weight: float, confirm: Confirm = None, early: float | None = None
) -> dict:
    """eot-bench's view: best cut-off rate within a latency budget, and the reverse."""
    points = [
        evaluate(rows, pause, t / 100, weight, confirm, early)
        for pause in DECISION_PAUSES
        if early is None or pause >= early
        for t in range(5, 100, 5)
    ]
    out: dict[str, float | None] = {}
    for budget in (300, 600):
        ok = [p["cutoff_rate"] for p in points if p["delay_mean_ms"] <= budget]
        out[f"cutoff_rate_at_{budget}ms"] = round(min(ok), 3) if ok else None
    for budget in (0.05, 0.10):
        ok = [p["delay_mean_ms"] for p in points if p["cutoff_rate"] <= budget]
        out[f"mean_ms_at_{int(budget * 100)}pct_cutoff"] = min(ok) if ok else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=Path(".cache"))
    ap.add_argument("--weight", type=float, default=0.5, help="text weight of the new detector")
    ap.add_argument(
        "--confirm",
        type=float,
        default=TEXT_CONFIRM,
        help="text verdict that ends the turn after --confirm-pause whatever the voice says",
    )
    ap.add_argument("--confirm-pause", type=float, default=TEXT_CONFIRM_PAUSE_S)
    ap.add_argument(
        "--confirm-min-audio",
        type=float,
        default=TEXT_CONFIRM_MIN_AUDIO,
        help="the voice verdict below which the words may not end the turn",
    )
    ap.add_argument("--early", type=float, default=EARLY_PAUSE_S, help="early verdict's quiet")
    args = ap.parse_args()
    import logging

    logging.disable(logging.INFO)
    from plugins.piper import PiperTTS

    piper = PiperTTS(use_cuda=False).piper_voice  # the packaged voice, for the corpus only
    items = corpus(piper)
    rows = asyncio.run(score(items, args.cache))
    confirm = (args.confirm, args.confirm_pause, args.confirm_min_audio)
    unguarded = (args.confirm, args.confirm_pause, 0.0)
    detectors: dict[str, tuple[float, Confirm, float | None]] = {
        "audio (Smart Turn alone)": (0.0, None, None),
        f"audio + text (weight {args.weight})": (args.weight, None, None),
        f"+ text confirms ({args.confirm}, {args.confirm_pause} s)": (args.weight, unguarded, None),
        f"  ... unless the voice < {args.confirm_min_audio}": (args.weight, confirm, None),
        f"  ... + early verdict at {args.early} s (default)": (args.weight, confirm, args.early),
    }
    print(
        f"{len(items)} utterances: {sum(i.kind == 'paused' for i in items)} paused, "
        f"{sum(i.kind == 'complete' for i in items)} complete; threshold {THRESHOLD}, "
        f"decision pause 0.3 s, silence timeout {SILENCE_TIMEOUT_S} s"
    )
    print(
        f"{'detector':44}{'cut-offs':>10}{'EOU p50':>9}{'EOU p95':>9}"
        f"{'cut@300ms':>11}{'cut@600ms':>11}{'ms@5%':>7}{'ms@10%':>8}"
    )
    results = {}
    for name, (weight, confirms, early) in detectors.items():
        main_point = evaluate(rows, 0.3, THRESHOLD, weight, confirms, early)
        board = leaderboard(rows, weight, confirms, early)
        results[name] = {**main_point, **board}
        print(
            f"{name:44}{main_point['cutoffs']:>5}/{main_point['paused']:<4}"
            f"{main_point['delay_p50_ms']:>9}{main_point['delay_p95_ms']:>9}"
            f"{board['cutoff_rate_at_300ms']!s:>11}{board['cutoff_rate_at_600ms']!s:>11}"
            f"{board['mean_ms_at_5pct_cutoff']!s:>7}{board['mean_ms_at_10pct_cutoff']!s:>8}"
        )
    for r in rows:
        ends_at = decide(r, 0.3, THRESHOLD, args.weight, confirm, args.early)[0]
        if r["kind"] == "paused" and ends_at is not None and r["pause_s"] > ends_at:
            print(f"  cut off: {r['said']!r} heard {r['heard']!r} ({r['voice']})")
    print(
        json.dumps(
            {
                "benchmark": "turns",
                "utterances": len(items),
                "results": results,
                "rows": rows,
                "machine": machine(),
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
