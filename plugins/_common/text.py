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
