"""/ipfs/ping/1.0.0 (libp2p/specs ping/ping.md).

The dialer writes 32 random bytes; the listener echoes each 32-byte payload back and
keeps looping until the dialer closes its write side. ``PingClient`` tracks the
payloads in flight and checks the echoes; ``PingServer`` is the echo, in whole
payloads. Both are sans-I/O: timing the round trips is the caller's job.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from neonet.core.errors import LocalProtocolError, RemoteProtocolError

PROTOCOL_ID = "/ipfs/ping/1.0.0"
PAYLOAD_SIZE = 32
# The spec expects one ping at a time; allow a few pipelined ones, not an unbounded queue.
DEFAULT_MAX_OUTSTANDING = 8


class PingClient:
    """The dialer's side of one ping stream.

    ``entropy(n)`` must return ``n`` random bytes (``os.urandom`` in production, a
    seeded function in tests).
    """

    def __init__(
        self,
        entropy: Callable[[int], bytes],
        *,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
    ) -> None:
        if max_outstanding < 1:
            raise LocalProtocolError("max_outstanding must be at least 1")
        self._entropy = entropy
        self._max_outstanding = max_outstanding
        self._outstanding: deque[bytes] = deque()
        self._buffer = bytearray()

    @property
    def outstanding(self) -> int:
        """Payloads sent and not yet echoed."""
        return len(self._outstanding)

    def send(self) -> bytes:
        """A fresh payload to write to the stream; its echo is now expected."""
        if len(self._outstanding) >= self._max_outstanding:
            raise LocalProtocolError(f"already {self._max_outstanding} pings in flight")
        payload = bytes(self._entropy(PAYLOAD_SIZE))
        if len(payload) != PAYLOAD_SIZE:
            raise LocalProtocolError(f"entropy returned {len(payload)} bytes, not {PAYLOAD_SIZE}")
        self._outstanding.append(payload)
        return payload

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Feed echoed bytes; return the payloads whose echo completed, in sending order.

        Raises ``RemoteProtocolError`` if an echo differs from its payload or if the peer
        sends more than was asked for.
        """
        self._buffer += data
        if len(self._buffer) > len(self._outstanding) * PAYLOAD_SIZE:
            raise RemoteProtocolError("ping peer sent bytes that echo no payload of ours")
        completed: list[bytes] = []
        while len(self._buffer) >= PAYLOAD_SIZE:
            expected = self._outstanding.popleft()
            if self._buffer[:PAYLOAD_SIZE] != expected:
                raise RemoteProtocolError("ping echo does not match the payload sent")
            del self._buffer[:PAYLOAD_SIZE]
            completed.append(expected)
        return completed


class PingServer:
    """The listener's side: echo the payloads back, whole ones only."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes | bytearray | memoryview) -> bytes:
        """Feed received bytes; return the bytes to echo now (a multiple of 32)."""
        self._buffer += data
        whole = len(self._buffer) - len(self._buffer) % PAYLOAD_SIZE
        echo = bytes(self._buffer[:whole])
        del self._buffer[:whole]
        return echo

    def finish(self) -> None:
        """At EOF: a trailing partial payload is a protocol error (there is nothing to echo)."""
        if self._buffer:
            raise RemoteProtocolError(
                f"ping stream ended {len(self._buffer)} bytes into a {PAYLOAD_SIZE}-byte payload"
            )
