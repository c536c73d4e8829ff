"""Batching of end-of-turn predictions from many sessions into one model run.

Sessions ask for a prediction at each pause; ``plugins._common.batching`` runs a request at
once when the model is idle and scores the requests that arrive meanwhile as one ONNX batch
(benchmarks/turn_batching.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .._common.audio import Float32Array
from .._common.batching import Batcher
from .model import SmartTurnModel

MAX_BATCH = 16


class TurnBatcher(Batcher[Float32Array, float]):
    """One per model and event loop; shared by every session's detector."""

    def __init__(self, model: SmartTurnModel, executor: ThreadPoolExecutor | None = None) -> None:
        super().__init__(
            model.predict,
            executor or ThreadPoolExecutor(1, thread_name_prefix="smart-turn"),
            max_batch=MAX_BATCH,
        )

    async def predict(self, audio16k: Float32Array) -> float:
        return await self.submit(audio16k)
