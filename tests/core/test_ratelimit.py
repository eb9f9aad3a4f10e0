"""Token-bucket rate limits: burst, refill, bounded key table."""

from __future__ import annotations

import pytest

from neonet.core.ratelimit import RateLimiter


def test_burst_then_refill_at_the_rate() -> None:
    limiter: RateLimiter[str] = RateLimiter(rate=2.0, burst=3)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.retry_after("a", 0.0) == pytest.approx(0.5)
    assert limiter.allow("a", 0.5) and not limiter.allow("a", 0.5)
    assert limiter.allow("b", 0.5)  # keys are independent
    assert [limiter.allow("a", 100.0) for _ in range(4)] == [True, True, True, False]


def test_time_going_backwards_adds_no_tokens_and_costs_count() -> None:
    limiter: RateLimiter[str] = RateLimiter(rate=1.0, burst=10)
    assert limiter.allow("a", 5.0, cost=10)
    assert not limiter.allow("a", 1.0)
    assert not limiter.allow("a", 5.5, cost=1)
    assert limiter.allow("a", 6.0, cost=1)


def test_the_table_is_bounded() -> None:
    limiter: RateLimiter[int] = RateLimiter(rate=1.0, burst=1, max_keys=100)
    for key in range(1000):
        limiter.allow(key, 0.0)
    assert len(limiter) == 100


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate=0, burst=1)


def test_available_counts_whole_tokens_without_taking_any() -> None:
    limiter: RateLimiter[str] = RateLimiter(rate=2.0, burst=5)
    assert limiter.available("new", 0.0) == 5
    assert limiter.allow("a", 0.0, cost=4.5)
    assert limiter.available("a", 0.0) == 0  # half a token
    assert limiter.available("a", 1.0) == 2  # +2 per second
    assert limiter.available("a", 1.0) == 2  # nothing was taken
    assert limiter.allow("a", 1.0, cost=2)
    assert not limiter.allow("a", 1.0)
    assert limiter.available("a", 100.0) == 5  # never above the burst
