"""Callback ids: ``cb_`` + a ULID (time-sortable, 80 random bits: not guessable)."""

from ulid import ULID

CALLBACK_PREFIX = "cb_"


def new_callback_id() -> str:
    return CALLBACK_PREFIX + str(ULID()).lower()
