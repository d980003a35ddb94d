"""When to try a transiently failed dial again: a pure value object, no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 15.0
    max_delay: float = 900.0
    jitter: float = 0.25
    """Each delay is spread by ±jitter of itself, so retries after an outage don't stampede."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.base_delay <= 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 < base_delay <= max_delay")

    def should_retry(self, attempts_made: int) -> bool:
        return attempts_made < self.max_attempts

    def delay(
        self, attempts_made: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after attempt number ``attempts_made`` (1-based) failed.

        Exponential with jitter, capped; a provider's ``Retry-After`` is a floor we honour
        (never less than it asks, even beyond the cap).
        """
        exponential = min(self.max_delay, self.base_delay * 2 ** (attempts_made - 1))
        spread = exponential * self.jitter
        jittered = exponential + (rng or random).uniform(-spread, spread)
        return float(max(jittered, retry_after or 0.0))
