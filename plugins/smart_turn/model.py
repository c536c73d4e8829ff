"""The Smart Turn v3.2 ONNX model: P(the speaker has finished their turn) from audio alone."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .._common.assets import WheelAsset, resolve
from .._common.audio import Float32Array
from .._common.errors import ModelLoadError
from .features import log_mel

SMART_TURN_V3_2 = WheelAsset(
    relpath="smart-turn/smart-turn-v3.2-cpu.onnx",
    package="pipecat-ai",
    version="1.14.0",
    member="pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
    sha256="2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
)


class SmartTurnModel:
    """Batched inference: the model's batch axis is dynamic, so several sessions' pauses
    can be scored in one call."""

    def __init__(self, model_path: Path, *, use_cuda: bool = False, threads: int = 1) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if use_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=so, providers=providers
            )
        except Exception as e:
            raise ModelLoadError(f"Smart Turn model {model_path} failed to load: {e}") from e
        self._input = self._session.get_inputs()[0].name
        self._lock = threading.Lock()
        self.path = model_path

    def run_bare(self, features: np.ndarray) -> Any:
        """One ONNX run on prepared features, without this class's lock or scoring: for
        benchmarks that compare the plugin with the bare engine."""
        return self._session.run(None, {self._input: features})

    @classmethod
    def from_cache(cls, cache_dir: Path, **kwargs: bool | int) -> SmartTurnModel:
        """Load the verified v3.2 model from the asset store (see ``download-files``)."""
        return cls(resolve(SMART_TURN_V3_2, cache_dir), **kwargs)  # type: ignore[arg-type]

    def predict(self, utterances: list[Float32Array]) -> list[float]:
        """P(complete) for each 16 kHz mono utterance (only the last 8 s are used)."""
        if not utterances:
            return []
        batch = np.stack([log_mel(u) for u in utterances])
        with self._lock:
            (out,) = self._session.run(None, {self._input: batch})
        # the exported graph ends in a sigmoid: these are probabilities already
        return [float(p) for p in np.asarray(out).reshape(-1)]
