"""Opaque cursors for ``GET /v1/callbacks``: where the next page starts, and for which list.

A cursor holds the last row's ``(created_at, id)`` (the list's order, newest first) and a
check: a SHA-256 over that position, the organization and the filters it was made for.
So a cursor that is not one of ours, was edited, or is used with other filters or by
another organization is refused (400), never guessed at. The check is not a secret-keyed
MAC on purpose: the API runs a process per core, and a cursor must work on each of them
without a shared secret to configure; nothing needs one, since a cursor only positions
a list that is always filtered by the caller's organization (a forged position shows
the caller its own rows, nothing more).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

VERSION = 1
_CHECK_CHARS = 32


class BadCursor(ValueError):
    """Not a cursor this list can continue from."""


@dataclass(frozen=True)
class Position:
    """The last row a page showed: the next page starts strictly after it."""

    created_at: datetime
    id: str


def _check(scope: Sequence[object], created_at: str, callback_id: str) -> str:
    material = json.dumps([VERSION, [str(s) for s in scope], created_at, callback_id])
    return hashlib.sha256(material.encode()).hexdigest()[:_CHECK_CHARS]


def encode(position: Position, scope: Sequence[object]) -> str:
    """``scope``: the organization and every filter of the list (``None`` for absent)."""
    at = position.created_at.isoformat()
    raw = json.dumps([VERSION, at, position.id, _check(scope, at, position.id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str, scope: Sequence[object]) -> Position:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, at, callback_id, check = json.loads(raw)
        if version != VERSION or not isinstance(at, str) or not isinstance(callback_id, str):
            raise BadCursor("unknown cursor version")
        if not isinstance(check, str) or check != _check(scope, at, callback_id):
            raise BadCursor("cursor does not match this list")
        created_at = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadCursor(str(exc)) from None
    if created_at.tzinfo is None:
        raise BadCursor("cursor without a time zone")
    return Position(created_at, callback_id)
