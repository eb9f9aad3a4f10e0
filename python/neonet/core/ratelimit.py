"""Token buckets keyed by peer, address or anything hashable, in a bounded table.

Each key gets ``burst`` tokens that refill at ``rate`` per second; an action costs one
token (or ``cost``). The table holds at most ``max_keys`` buckets; the least recently
used goes first, which gives an evicted key a full bucket again, so ``max_keys`` must
exceed the number of keys active within ``burst / rate`` seconds for the limit to hold
(the caller's connection caps bound that). Time is an argument: no clock in here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class RateLimiter(Generic[Key]):
    def __init__(self, rate: float, burst: float, *, max_keys: int = 65_536) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be positive, burst >= 1 and max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[Key, tuple[float, float]] = OrderedDict()

    def allow(self, key: Key, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket if it has them."""
        tokens, last = self._buckets.pop(key, (self.burst, now))
        now = max(now, last)  # a clock that steps back refills nothing
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= cost
        self._buckets[key] = (tokens - cost if allowed else tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def available(self, key: Key, now: float) -> int:
        """Whole tokens ``key`` has now (``allow(key, now, cost=n)`` succeeds for n up to
        it); nothing changes."""
        tokens, last = self._buckets.get(key, (self.burst, now))
        return int(min(self.burst, tokens + max(0.0, now - last) * self.rate))

    def retry_after(self, key: Key, now: float, cost: float = 1.0) -> float:
        """Seconds until ``allow(key, ..., cost)`` would succeed (0 if it would now)."""
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        return max(0.0, (cost - tokens) / self.rate)

    def __len__(self) -> int:
        return len(self._buckets)
