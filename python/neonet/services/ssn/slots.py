"""``RequestSlots``: the SSN's per-client-stream bound on requests in flight
(backpressure; ARCHITECTURE.md, "The SSN"). Used by ``signals.ClientStream`` and the
server's federation streams; split from ``signals.py`` to keep it under ~700 lines.
"""

from __future__ import annotations

import trio

__all__ = ["RequestSlots"]


class RequestSlots:
    """At most ``limit`` requests of one stream in flight; the stream's reader waits for a
    free slot (backpressure). A ``trio.Semaphore`` without its per-instance parking lot:
    the SSN keeps one per client."""

    __slots__ = ("_free", "_waiter")

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiter: trio.Event | None = None

    async def acquire(self) -> None:
        while self._free <= 0:  # only the stream's reader acquires: one waiter at most
            if self._waiter is None:
                self._waiter = trio.Event()
            await self._waiter.wait()
        self._free -= 1

    @property
    def free(self) -> int:
        return self._free

    def take_nowait(self) -> None:
        """``acquire`` when ``free`` says a slot is there (the caller checked)."""
        assert self._free > 0
        self._free -= 1

    def take_many(self, count: int) -> None:
        """``take_nowait`` of ``count`` slots (the caller checked ``free``)."""
        assert 0 <= count <= self._free
        self._free -= count

    def release(self, count: int = 1) -> None:
        self._free += count
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.set()
