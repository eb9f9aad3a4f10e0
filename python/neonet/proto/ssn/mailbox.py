"""Signals waiting for a peer that is briefly offline: bounded, time-limited mailboxes.

An SSN that cannot hand a signal to its recipient right away keeps it for ``ttl``
seconds and delivers it when the recipient registers again. Every dimension is capped:
signals per recipient, signals in all, bytes in all, and the payload size; a signal
that does not fit is refused with ``MailboxFull`` (the sender is told, nothing is
dropped silently). Oldest first out: expiry follows arrival because ``ttl`` is fixed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from neonet.core.errors import LimitExceededError


class MailboxFull(LimitExceededError):
    """The recipient's mailbox (or the SSN's mailbox space) has no room for this signal."""


@dataclass(frozen=True, slots=True)
class StoredSignal:
    sender: bytes
    payload: bytes
    stored_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class MailboxConfig:
    ttl: float = 60.0
    per_recipient: int = 32
    total: int = 100_000
    total_bytes: int = 64 << 20
    max_payload: int = 16 << 10


class Mailboxes:
    def __init__(self, config: MailboxConfig | None = None) -> None:
        self.config = config or MailboxConfig()
        self._boxes: dict[bytes, deque[StoredSignal]] = {}
        self._arrivals: deque[tuple[bytes, StoredSignal]] = deque()
        self._count = 0
        self._bytes = 0

    def put(self, recipient: bytes, sender: bytes, payload: bytes, now: float) -> StoredSignal:
        """Keep a signal for ``recipient``; ``MailboxFull`` if a limit says no."""
        config = self.config
        if len(payload) > config.max_payload:
            raise MailboxFull(f"signal of {len(payload)} bytes exceeds {config.max_payload}")
        self.expire(now)
        box = self._boxes.get(recipient)
        if box is not None and len(box) >= config.per_recipient:
            raise MailboxFull(f"mailbox of the recipient is full ({config.per_recipient} signals)")
        if self._count >= config.total or self._bytes + len(payload) > config.total_bytes:
            raise MailboxFull("this SSN's mailbox space is full")
        signal = StoredSignal(sender, payload, now, now + config.ttl)
        if box is None:
            box = self._boxes[recipient] = deque()
        box.append(signal)
        self._arrivals.append((recipient, signal))
        self._count += 1
        self._bytes += len(payload)
        return signal

    def take(self, recipient: bytes, now: float) -> list[StoredSignal]:
        """Everything still valid for ``recipient``, oldest first; the box is emptied."""
        self.expire(now)
        box = self._boxes.pop(recipient, None)
        if not box:
            return []
        self._count -= len(box)
        self._bytes -= sum(len(s.payload) for s in box)
        return list(box)

    def expire(self, now: float) -> int:
        """Drop signals whose time is up; returns how many."""
        dropped = 0
        arrivals = self._arrivals
        while arrivals and arrivals[0][1].expires_at <= now:
            recipient, signal = arrivals.popleft()
            box = self._boxes.get(recipient)
            if box and box[0] is signal:
                box.popleft()
                self._count -= 1
                self._bytes -= len(signal.payload)
                dropped += 1
                if not box:
                    del self._boxes[recipient]
        # Arrivals of taken signals are skipped above; trim them when they pile up.
        if len(arrivals) > 2 * self._count + 1024:
            live = {id(s) for box in self._boxes.values() for s in box}
            self._arrivals = deque(a for a in arrivals if id(a[1]) in live)
        return dropped

    def pending(self, recipient: bytes) -> int:
        box = self._boxes.get(recipient)
        return len(box) if box else 0

    def __len__(self) -> int:
        return self._count

    @property
    def bytes_held(self) -> int:
        return self._bytes
