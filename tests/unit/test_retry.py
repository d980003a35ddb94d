import random

import pytest

from worker.retry import RetryPolicy


def test_delays_grow_exponentially_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=10, max_delay=100, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [10, 20, 40, 80, 100]


def test_jitter_stays_within_its_band_and_varies() -> None:
    policy = RetryPolicy(base_delay=100, max_delay=1000, jitter=0.25)
    rng = random.Random(7)
    delays = [policy.delay(1, rng=rng) for _ in range(200)]
    assert all(75 <= d <= 125 for d in delays)
    assert len(set(delays)) > 100


def test_retry_after_is_a_floor_even_beyond_the_cap() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=10, jitter=0)
    assert policy.delay(1, retry_after=30) == 30
    assert policy.delay(1, retry_after=0.5) == 1


def test_should_retry_until_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.should_retry(n) for n in (1, 2, 3, 4)] == [True, True, False, False]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"jitter": 1.0}, {"base_delay": 0}, {"base_delay": 10, "max_delay": 5}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must be|need"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
