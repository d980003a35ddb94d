"""``Authorization: Bearer <key>``: which organization the caller acts for.

Missing, malformed, unknown and revoked keys get the same 401, so a caller learns
nothing about which keys exist.

A verified key is remembered by this process for :data:`KEY_CACHE_SECONDS`, keyed by
the token's SHA-256 (the stored form, never the token): under load the lookup was a
third of each request's database round trips. So a key revoked with
``callbacks api-key revoke`` stops working within that bound. Unknown and revoked
tokens are never remembered: a new key works at once, and random tokens cannot fill
the cache.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from worker.api.deps import Context
from worker.api.errors import Unauthorized
from worker.apikeys import MAX_TOKEN_LENGTH, hash_token
from worker.db.models import ApiKey

KEY_CACHE_SECONDS = 5.0
"""How long a revoked key may still be accepted by a process that verified it before."""
KEY_CACHE_MAX = 10_000


class KeyCache:
    """Live keys by token hash, each for at most ``ttl`` seconds after it was read."""

    def __init__(
        self,
        ttl: float = KEY_CACHE_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = KEY_CACHE_MAX,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self._keys: dict[str, tuple[float, ApiKey]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> ApiKey | None:
        entry = self._keys.get(digest)
        if entry is None:
            return None
        until, key = entry
        if self.clock() >= until:
            self._keys.pop(digest, None)
            return None
        return key

    def put(self, digest: str, key: ApiKey) -> None:
        with self._lock:
            if len(self._keys) >= self.max_entries:
                # Simpler than LRU and as good here: a process sees a few keys, not 10,000.
                self._keys.clear()
            # Each entry lives a random 50-100 % of the bound, so keys verified together
            # (at start-up) are not all looked up again in the same instant.
            ttl = self.ttl * (0.5 + random.random() / 2)
            self._keys[digest] = (self.clock() + ttl, key)


def key_cache(app: FastAPI) -> KeyCache:
    """The app's cache (tests may set ``app.state.key_cache`` to one with their own clock)."""
    cache: KeyCache | None = getattr(app.state, "key_cache", None)
    if cache is None:
        cache = app.state.key_cache = KeyCache()
    return cache


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    # The scheme is case-insensitive (RFC 9110 §11.1).
    if scheme.lower() != "bearer" or not token:
        return None
    return token


async def require_key(request: Request, ctx: Context) -> ApiKey:
    # async: a cache hit costs no hop to the threadpool, nor does a miss on PostgreSQL
    # (worker.api.readers).
    token = bearer_token(request)
    if token is None or len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized()
    cache = key_cache(request.app)
    digest = hash_token(token)
    key = cache.get(digest)
    if key is None:
        key = await ctx.reader.key(token)
        if key is None:
            raise Unauthorized()
        cache.put(digest, key)
    return key


Caller = Annotated[ApiKey, Depends(require_key)]
