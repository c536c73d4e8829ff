"""Text an engine can be given: whatever an LLM, an API caller or an operator sends.

Speech engines take C strings (Piper's phonemizer, espeak-ng's argv): a NUL ends or refuses
the text, a lone surrogate cannot be encoded at all, and terminal escapes or other control
characters are read out as noise. Such characters become spaces; formatting characters
(zero-width space, BOM, bidi marks) are dropped, except the zero-width joiner that holds
emoji sequences together. Everything printable stays, including emoji, right-to-left
scripts and markup-looking text, which the engines read as plain words.
"""

from __future__ import annotations

import unicodedata

_KEEP_FORMAT = {"\u200d"}  # zero-width joiner
_KEEP_CONTROL = {"\n", "\t"}


def speakable(text: str) -> str:
    """``text`` in NFC with unusable characters removed; never raises."""
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs", "Co", "Cn") and ch not in _KEEP_CONTROL:
            out.append(" ")
        elif category == "Cf" and ch not in _KEEP_FORMAT:
            continue
        else:
            out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


_BREAKS = (". ", "! ", "? ", "; ", ": ", ", ", " ")


def split_long(text: str, max_chars: int) -> list[str]:
    """``text`` in pieces of at most ``max_chars``, cut at the last clause break (or space)
    before the limit, so a "sentence" without punctuation never becomes one huge synthesis.
    A word longer than the limit is cut inside."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]
        for mark in _BREAKS:
            found = window.rfind(mark)
            if found > max_chars // 3:  # a break too near the start makes tiny pieces
                cut = found + len(mark.rstrip())
                break
        else:
            cut = max_chars
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return [p for p in pieces if p]
