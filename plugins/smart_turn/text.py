"""Does the user's text read as a finished turn? A second opinion next to Smart Turn's audio.

Smart Turn judges prosody, and a speaker who pauses mid-sentence with a falling voice ("I
want to order … a large pizza") looks finished to it. The words say otherwise. Two signals:

- **cues**: whisper writes an unfinished pause as a trailing "..." and ends such text on a
  word that cannot end an English sentence ("to", "the", "because", a hesitation "um");
- **a language model's verdict**, the way LiveKit's text turn detector works: the
  probability that the chat template's end-of-turn token follows the user's text, from a
  small instruct model (the packaged SmolLM2-135M on llama.cpp, 15-50 ms a call on 2
  cores). Trailing punctuation is stripped first: whisper punctuates every pause as an
  ending, which would tell the model the turn is over.

``TextVerdict.p_complete`` maps the model's log10 probability through a logistic around
``MIDPOINT`` (between the ranges measured for unfinished, -6.5 to -11.3, and finished
utterances, -2.6 to -7.1, on espeak speech: docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._common.errors import ModelLoadError
from .log import logger

MIDPOINT = -6.5  # log10 P(end of turn) at which the verdict is 0.5
SCALE = 1.0  # log10 units per e-fold of the odds
# words after which an English sentence is not over (a pause there is a pause, not an end)
OPEN_WORDS = frozenset(
    "a an the to of for with and or but because so if than that which who whose when while "
    "is are was were be been am my your his her our their its this these those at in on by "
    "from into about like um uh er erm hmm".split()
)
# only the user's last words matter for whether they are done; bounded cost per call
MAX_CHARS = 400
_TRAILING = re.compile(r"[\s.,!?;:…\"')\]-]+$")


@dataclass(frozen=True, slots=True)
class TextVerdict:
    text: str
    p_complete: float
    log10_p_end: float | None  # None when a cue decided without the model
    cue: str | None


def open_ending(text: str) -> str | None:
    """Why ``text`` cannot be a finished turn, or None."""
    stripped = text.rstrip()
    if stripped.endswith(("...", "…")):
        return "ellipsis"
    words = re.findall(r"[a-z0-9']+", stripped.lower())  # "is 4279." ends on a number
    if words and words[-1] in OPEN_WORDS:
        return f"open word '{words[-1]}'"
    return None


class TextTurnScorer:
    """P(the text is a finished turn) from cues and a small chat model; one per process.

    The model loads on first use (lazily: a session that never pauses costs nothing) into
    its own llama.cpp context, so it never disturbs the conversation model's cache, and
    runs on one thread: calls queue rather than compete for the CPU."""

    def __init__(self, model_path: Path, *, n_threads: int = 1) -> None:
        self._model_path = model_path
        self._n_threads = n_threads
        self._llama: Any = None
        self._end_id: int | None = None
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turn-text")
        # the newest verdict: a pause judged early and again when the session asks is
        # scored once (the verdict depends on the text alone)
        self._last: TextVerdict | None = None

    def _load(self) -> Any:
        with self._load_lock:
            if self._llama is None:
                try:
                    from llama_cpp import Llama

                    llama = Llama(
                        model_path=str(self._model_path),
                        n_ctx=256,
                        n_threads=self._n_threads,
                        # prompts too: llama.cpp's default for them is every core, in
                        # every job process that judges a pause
                        n_threads_batch=self._n_threads,
                        verbose=False,
                    )
                except Exception as e:
                    raise ModelLoadError(f"turn text model {self._model_path}: {e}") from e
                ids = llama.tokenize(b"<|im_end|>", add_bos=False, special=True)
                if len(ids) != 1:
                    raise ModelLoadError(
                        f"{self._model_path.name} has no single <|im_end|> token: the text "
                        "turn scorer needs a ChatML model"
                    )
                self._end_id = ids[0]
                self._llama = llama
        return self._llama

    def log10_p_end(self, text: str) -> float:
        """Blocking: log10 P(<|im_end|> follows the user's text)."""
        llama = self._load()
        body = _TRAILING.sub("", text.strip())[-MAX_CHARS:]
        prompt = f"<|im_start|>user\n{body}".encode()
        tokens = llama.tokenize(prompt, add_bos=False, special=True)
        llama.reset()
        llama.eval(tokens)
        # the last position's logits (llama.cpp keeps them without logits_all)
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(llama.n_vocab(),)).astype(np.float64)
        top = float(logits.max())
        log_z = top + math.log(float(np.exp(logits - top).sum()))
        return (float(logits[self._end_id]) - log_z) / math.log(10)

    def verdict_now(self, text: str) -> TextVerdict:
        """Blocking verdict (cues first: they are free and certain)."""
        cue = open_ending(text)
        if cue is not None:
            return TextVerdict(text, 0.0, None, cue)
        if not text.strip():
            return TextVerdict(text, 0.5, None, "no text")  # no opinion
        score = self.log10_p_end(text)
        p = 1.0 / (1.0 + math.exp(-(score - MIDPOINT) / SCALE))
        return TextVerdict(text, p, score, None)

    async def verdict(self, text: str) -> TextVerdict:
        last = self._last
        if last is not None and last.text == text:  # the same pause judged twice
            return last
        loop = asyncio.get_running_loop()
        verdict = await loop.run_in_executor(self._executor, self.verdict_now, text)
        self._last = verdict
        return verdict

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._llama is not None:
            try:
                self._llama.close()
            except Exception:  # best effort at shutdown
                logger.debug("turn text model close failed", exc_info=True)
