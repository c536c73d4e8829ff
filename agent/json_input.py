"""JSON from outside (request bodies, dispatch metadata, config and relay messages, frames of
the inference socket), parsed with a nesting limit.

Python's ``json`` recurses once per level: 10 000 nested ``[`` raise ``RecursionError`` deep
inside the parser, which callers catching ``JSONDecodeError`` turn into a 500 or a silent
drop. The nesting is measured first, on the brackets outside strings, so such input is a
plain :class:`JsonInputError` before the parser sees it.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class JsonInputError(ValueError):
    """Not JSON, or nested deeper than allowed; the message is safe to return."""


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (brackets in strings ignored)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads(raw: str | bytes, *, max_depth: int = MAX_DEPTH, what: str = "input") -> Any:
    """``json.loads`` for untrusted input; raises :class:`JsonInputError`."""
    try:
        text = raw.decode() if isinstance(raw, bytes | bytearray) else raw
    except UnicodeDecodeError:
        raise JsonInputError(f"{what} is not valid UTF-8") from None
    if nesting_depth(text) > max_depth:
        raise JsonInputError(f"{what} is nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise JsonInputError(f"{what} is not valid JSON: {e}") from None
