"""Concurrent end-of-turn predictions from many sessions run as one batch, same answers."""

from __future__ import annotations

import asyncio

import numpy as np

from plugins.smart_turn import SmartTurnModel, TurnBatcher
from tests.audio_fixtures import speak


class CountingModel:
    def __init__(self, model: SmartTurnModel) -> None:
        self._model = model
        self.calls: list[int] = []

    def predict(self, utterances: list[np.ndarray]) -> list[float]:
        self.calls.append(len(utterances))
        return self._model.predict(utterances)


async def test_concurrent_predictions_are_batched_and_match_single_runs(
    smart_turn_model: SmartTurnModel,
) -> None:
    texts = ["I would like to", "Book a table for two, please.", "Well, and then", "Thanks!"]
    clips = [speak(t, rate=16000).astype(np.float32) / 32768.0 for t in texts] * 3
    alone = [smart_turn_model.predict([clip])[0] for clip in clips]

    counting = CountingModel(smart_turn_model)
    batcher = TurnBatcher(counting)  # type: ignore[arg-type]
    together = await asyncio.gather(*(batcher.predict(clip) for clip in clips))

    assert np.allclose(together, alone, atol=1e-4)
    assert sum(counting.calls) == len(clips)
    # requests pending together share a run instead of queueing one by one
    assert max(counting.calls) > 1 and len(counting.calls) < len(clips), counting.calls

    # one request alone runs alone, without waiting for company
    counting.calls.clear()
    await batcher.predict(clips[0])
    assert counting.calls == [1]


async def test_a_failing_batch_answers_every_waiting_session(
    smart_turn_model: SmartTurnModel,
) -> None:
    class Broken:
        def predict(self, utterances: list[np.ndarray]) -> list[float]:
            raise RuntimeError("onnx run failed")

    batcher = TurnBatcher(Broken())  # type: ignore[arg-type]
    clip = np.zeros(16000, dtype=np.float32)
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.predict(clip) for _ in range(5)), return_exceptions=True), 10
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    p = await asyncio.wait_for(TurnBatcher(smart_turn_model).predict(clip), 10)
    assert 0.0 <= p <= 1.0  # the next batch, on a working model, answers a probability
