"""NOISE_FILTER=auto: DeepFilterNet runs while the session's audio is noisy, and only then."""

from __future__ import annotations

import threading

import numpy as np
from livekit import rtc

from plugins.noise import DeepFilterNetFilter, create
from plugins.noise.auto import AutoNoiseFilter
from tests.audio_fixtures import mix_at_snr, noise_like, silence, speak

RATE = 16000


def feed(f: AutoNoiseFilter, pcm: np.ndarray) -> list[bool]:
    """Push ``pcm`` in 10 ms frames; whether the filter was active after each. A warm-up is
    waited for after the frame that starts it (the offline equivalent of a fast machine)."""
    per = RATE // 100
    states = []
    for i in range(0, pcm.size - per + 1, per):
        f.process(rtc.AudioFrame(pcm[i : i + per].tobytes(), RATE, 1, per))
        f.wait_ready(timeout=30)
        states.append(f.active)
    return states


def sentence(snr_db: float | None) -> np.ndarray:
    speech = speak("What is the weather like in Paris today?", rate=RATE)
    audio = np.concatenate([silence(1.5, RATE), speech, silence(0.5, RATE)])
    return audio if snr_db is None else mix_at_snr(audio, noise_like(audio.size), snr_db)


def test_noisy_speech_turns_the_filter_on_and_it_filters() -> None:
    switches: list[bool] = []
    f = AutoNoiseFilter(DeepFilterNetFilter, on_switch=lambda on, *_: switches.append(on))
    noisy = sentence(10.0)
    states = feed(f, noisy)
    assert states[-1] and switches == [True]
    assert not states[int(0.9 * 100)]  # no verdict before a second of audio
    per = RATE // 100
    frame = rtc.AudioFrame(noisy[:per].tobytes(), RATE, 1, per)
    assert f.process(frame).data.tobytes() != frame.data.tobytes()  # really filtered
    f.close()


def test_clean_speech_leaves_the_audio_untouched() -> None:
    f = create("auto")
    assert isinstance(f, AutoNoiseFilter)
    clean = sentence(None)
    assert not any(feed(f, clean))
    per = RATE // 100
    frame = rtc.AudioFrame(clean[RATE : RATE + per].tobytes(), RATE, 1, per)
    assert f.process(frame) is frame
    f.close()


def test_a_quiet_room_turns_it_off_and_it_never_flaps() -> None:
    from plugins.noise.auto import HOLD_S

    f = AutoNoiseFilter(DeepFilterNetFilter)
    assert feed(f, sentence(10.0))[-1]
    assert not feed(f, sentence(None))[-1]  # quiet again: off
    assert f.switches == 2
    # noise that comes and goes every half second: at most one switch per hold time
    noisy, quiet = sentence(10.0)[: RATE // 2], silence(0.5, RATE)
    feed(f, np.concatenate([noisy, quiet] * 8))
    assert f.switches - 2 <= 8 / HOLD_S + 1
    f.close()


def test_the_filter_warms_up_off_the_frame_path_and_is_closed_if_never_used() -> None:
    built: list[DeepFilterNetFilter] = []
    closed: list[DeepFilterNetFilter] = []

    class Recorded(DeepFilterNetFilter):
        def __init__(self) -> None:
            super().__init__()
            self.primed_frames = 0
            built.append(self)

        def process(self, frame: rtc.AudioFrame) -> rtc.AudioFrame:
            self.primed_frames += 1
            return super().process(frame)

        def close(self) -> None:
            closed.append(self)
            super().close()

    noisy = sentence(10.0)
    per = RATE // 100
    frames = [
        rtc.AudioFrame(noisy[i : i + per].tobytes(), RATE, 1, per)
        for i in range(0, noisy.size - per + 1, per)
    ]
    f = AutoNoiseFilter(Recorded)
    # up to the verdict (one second of audio) every frame comes back untouched, and the
    # verdict's own frame does not wait for the filter to be built
    for frame in frames[:100]:
        assert f.process(frame) is frame
    assert not f.active
    f.wait_ready(timeout=30)
    assert len(built) == 1 and built[0].primed_frames >= 99  # settled on the last second
    assert f.process(frames[100]) is not frames[100] and f.active
    f.close()
    assert closed == built

    # closed while the warm-up runs: what it builds is closed when it is built
    built.clear(), closed.clear()
    g = AutoNoiseFilter(Recorded)
    for frame in frames[:100]:
        g.process(frame)
    g.close()
    for _ in range(300):  # the warm-up thread finishes on its own
        if closed:
            break
        threading.Event().wait(0.1)
    assert closed == built and len(built) == 1
