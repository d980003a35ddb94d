"""Request bodies as JSON, with the nesting bounded before the parser sees them.

``json.loads`` recurses per level: 1,000 levels (2 KB) raised ``RecursionError``, which is
no ``ValueError`` and became a 500. Counting brackets outside strings first refuses such
a body in time linear in its size (and it is at most the edge's limit, 64 KB).
"""

from __future__ import annotations

import json
import re

from worker.validation import MAX_JSON_DEPTH

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class BadJson(ValueError):
    """The body is not JSON we accept; the message says why."""


def nesting(raw: bytes) -> int:
    """How deep arrays and objects nest in ``raw`` (strings' contents do not count)."""
    brackets = _STRING.sub(b"", raw).translate(None, delete=_NOT_BRACKET)
    depth = deepest = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_json(raw: bytes) -> object:
    if nesting(raw) > MAX_JSON_DEPTH:
        raise BadJson(f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw)
    except ValueError:
        raise BadJson("malformed JSON") from None
