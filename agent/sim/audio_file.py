"""Audio files from the command line: whatever a newcomer has at hand, as 16 kHz mono int16.

WAV of any sample format (16/24/32-bit integer, float), FLAC, OGG/Opus, MP3, M4A/AAC: PyAV
(installed with livekit) decodes them all and resamples on the way. Errors are one sentence
that names the file; the input is bounded (``MAX_SECONDS``) so a stray multi-hour
recording cannot fill memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

RATE = 16000
MAX_SECONDS = 600.0


class AudioFileError(ValueError):
    """The file cannot be used as speech input; the message says why, in one line."""


def read_audio_16k(path: Path, *, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """The file's first audio stream as 16 kHz mono int16."""
    import av

    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if not path.is_file():
        raise AudioFileError(f"{path}: not a file")
    limit = int(max_seconds * RATE)
    parts: list[np.ndarray] = []
    total = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioFileError(f"{path}: has no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
                    total += parts[-1].size
                if total > limit:
                    raise AudioFileError(f"{path}: longer than {max_seconds:.0f} s")
            for out in resampler.resample(None):  # what the resampler still holds
                parts.append(out.to_ndarray().reshape(-1))
    except AudioFileError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise AudioFileError(f"{path}: not an audio file this build can read ({e})") from None
    pcm = np.concatenate(parts).astype(np.int16) if parts else np.zeros(0, np.int16)
    if pcm.size == 0:
        raise AudioFileError(f"{path}: contains no audio")
    return pcm
