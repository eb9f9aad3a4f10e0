"""Detect two tasks using one direction of a stream at once (trio's stream contract)."""

from __future__ import annotations

import trio


class ConflictGuard:
    """``with guard:`` raises ``trio.BusyResourceError`` if another task is already inside."""

    __slots__ = ("_busy", "_what")

    def __init__(self, what: str) -> None:
        self._what = what
        self._busy = False

    def __enter__(self) -> None:
        if self._busy:
            raise trio.BusyResourceError(f"another task is already {self._what} on this stream")
        self._busy = True

    def __exit__(self, *exc_info: object) -> None:
        self._busy = False
