"""The dispatch policy: leases, retries, holds and pacing, as one plain value.

Built from the settings by the composition root (:mod:`worker.runtime`); the domain
modules take it as it is and never read settings themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from worker.pacing.limits import Pacing
from worker.retry import RetryPolicy


@dataclass(frozen=True)
class DispatchPolicy:
    claim_lease: timedelta = timedelta(minutes=5)
    attempt_lease: timedelta = timedelta(minutes=2)
    """How long an attempt may run before the reaper calls its outcome unknown."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    key_rejected_hold: timedelta = timedelta(minutes=2)
    lateness: timedelta | None = timedelta(hours=4)
    """Default for new callbacks, and the window a manual dispatch gets from now."""
    redial_unknown: bool = False
    """Reaper: re-send an attempt of unknown outcome with the same key instead of failing it."""
    record_retries: int = 3
    """How often to retry an outcome write that failed for another reason than the database
    being unavailable (that one is retried for as long as the attempt's lease allows)."""
    pacing: Pacing = field(default_factory=Pacing)
    """Calling windows, caps and 429 pauses (worker/pacing/limits.py)."""
