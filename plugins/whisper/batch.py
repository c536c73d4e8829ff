"""Batched whisper decoding: several sessions' utterances in one encoder and decoder run.

faster-whisper's ``transcribe`` decodes one audio at a time (its ``BatchedInferencePipeline``
batches the chunks of one long file). A voice worker has the opposite shape: many short
utterances from different sessions at the same moment. This decodes them as one CTranslate2
batch, with the options the streaming plugin uses for a single utterance (greedy or beam,
no timestamps, no conditioning on previous text, faster-whisper's token suppression and its
no-speech rule), so a batch gives the same text as one-by-one decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING

import numpy as np

from .._common.audio import Float32Array

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

# whisper's encoder window: 30 s of audio, 100 feature frames a second
FULL_WINDOW_S = 30.0
FRAMES_PER_S = 100
# audio past the end of the speech in the window, so the last word is never at its edge
WINDOW_MARGIN_S = 1.0
# faster-whisper's defaults for dropping a segment as silence
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    audio: Float32Array  # 16 kHz mono, at most 30 s
    language: str | None
    beam_size: int


def window_frames(longest_samples: int, min_window_s: float) -> int:
    """Feature frames the encoder sees for a batch whose longest audio has this many samples.

    Whisper pads every input to 30 s, and the encoder's cost grows with the window, not the
    speech. A shorter window (at least ``min_window_s``, always the speech plus a margin) cut
    a 4 s utterance's decode from 408 to 151 ms on 2 CPU cores with the same transcripts on
    test speech (docs/benchmarks.md); 30 s is whisper's own window."""
    speech_s = longest_samples / 16000 + WINDOW_MARGIN_S
    window_s = min(FULL_WINDOW_S, max(min_window_s, speech_s))
    return int(round(window_s * FRAMES_PER_S))


def decode_batch(
    model: WhisperModel, requests: Sequence[DecodeRequest], min_window_s: float = FULL_WINDOW_S
) -> list[str]:
    """Transcripts for ``requests``, in order; requests that share a language and beam size
    are decoded together."""
    out = [""] * len(requests)

    def key(i: int) -> tuple[str, int]:
        return (requests[i].language or "", requests[i].beam_size)

    order = sorted((i for i, r in enumerate(requests) if r.audio.size), key=key)
    for (language, beam_size), group in groupby(order, key=key):
        idx = list(group)
        audios = [requests[i].audio for i in idx]
        frames = window_frames(max(a.size for a in audios), min_window_s)
        texts = _decode_group(model, audios, language or None, beam_size, frames)
        for i, text in zip(idx, texts, strict=True):
            out[i] = text
    return out


def _decode_group(
    model: WhisperModel,
    audios: list[Float32Array],
    language: str | None,
    beam_size: int,
    frames: int = int(FULL_WINDOW_S * FRAMES_PER_S),
) -> list[str]:
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    multilingual = bool(model.model.is_multilingual)
    # an English-only model has no language token to choose; a multilingual one detects
    # the language per utterance when none is given
    detect = multilingual and language is None
    tokenizer = Tokenizer(
        model.hf_tokenizer,
        multilingual,
        task="transcribe",
        language=(language or "en") if multilingual else "en",
    )
    # the extractor returns one frame past the audio; transcribe() drops it too
    features = np.stack(
        [pad_or_trim(model.feature_extractor(a)[:, :-1], length=frames) for a in audios]
    ).astype(np.float32)
    encoded = model.encode(features)
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
    prompts = [list(prompt) for _ in audios]
    if detect:
        at = prompt.index(tokenizer.language)
        for p, langs in zip(prompts, model.model.detect_language(encoded), strict=True):
            p[at] = tokenizer.tokenizer.token_to_id(langs[0][0])
    results = model.model.generate(
        encoded,
        prompts,
        beam_size=beam_size,
        max_length=model.max_length,
        suppress_blank=True,
        suppress_tokens=list(get_suppressed_tokens(tokenizer, (-1,)) or ()),
        return_scores=True,
        return_no_speech_prob=True,
    )
    texts = []
    for result in results:
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        silent = result.no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOG_PROB_THRESHOLD
        texts.append("" if silent else tokenizer.decode(tokens).strip())
    return texts
