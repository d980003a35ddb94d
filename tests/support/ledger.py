"""The provider's own account of calls placed, per callback — independent of our database.

:class:`CallLedger` wraps a provider ``behaviour``. The stand-in answers a repeated
``Idempotency-Key`` itself (no new call), so every time the behaviour decides that a call
rings is one new call placed. The ledger files it under the ``metadata.callback_id`` of the
request body, so two calls for one callback show up even if they carried different keys.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any

from tests.support.provider import Behaviour, Provider, Received, Reply, placed


def callback_id_of(req: Received) -> str:
    body: Any = req.body
    if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
        return str(body["metadata"].get("callback_id", ""))
    return ""


def rings(reply: Reply) -> bool:
    return reply.places_call if reply.places_call is not None else 200 <= reply.status < 300


class CallLedger:
    def __init__(self, behaviour: Behaviour = placed) -> None:
        self.behaviour = behaviour
        self.placed: defaultdict[str, list[str]] = defaultdict(list)
        """callback_id -> the Idempotency-Key of every call placed for it (in order)."""
        self.answers: Counter[str] = Counter()
        """What the behaviour answered new keys with: "placed", "503", "hang+placed", ..."""
        self._lock = threading.Lock()

    def __call__(self, req: Received) -> Reply:
        reply = self.behaviour(req)
        key = req.headers.get("idempotency-key", "")
        with self._lock:
            if rings(reply):
                self.placed[callback_id_of(req)].append(key)
            self.answers[_label(reply)] += 1
        return reply

    def duplicates(self) -> dict[str, list[str]]:
        """Callbacks the provider placed more than one call for."""
        with self._lock:
            return {cid: list(keys) for cid, keys in self.placed.items() if len(keys) > 1}

    def calls_for(self, callback_id: str) -> list[str]:
        with self._lock:
            return list(self.placed.get(callback_id, []))


def requests_per_callback(provider: Provider) -> Counter[str]:
    """How many dial requests (placed or not, repeated keys included) named each callback."""
    return Counter(callback_id_of(r) for r in provider.requests)


def requests_for(provider: Provider, callback_id: str) -> list[Received]:
    return [r for r in provider.requests if callback_id_of(r) == callback_id]


def _label(reply: Reply) -> str:
    if rings(reply):
        return "placed" if reply.delay == 0 else "placed then hung"
    return str(reply.status)
