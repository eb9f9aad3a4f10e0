"""A connection's whole data path in one engine: yamux inside the Noise transport.

Implements nothing new: libp2p/specs yamux/README.md (``neonet.core.yamux``) over
noise/README.md "Wire Format" and "Encryption and I/O" (``neonet.core.noise_transport``).
``NoiseYamuxConnection`` is fed whole socket reads and returns the events of every
stream; ``data_to_send`` returns everything queued, framed and encrypted.

This is the pure twin of ``neonet._native.NoiseYamuxConnection`` (crates/neonet-core
``noise_yamux.rs``), and it is simply the composition of the two pure engines::

    receive_data(data) == yamux.receive_data(noise.receive_data(data))
    data_to_send()     == noise.encrypt(yamux.data_to_send())

errors included: a Noise failure raises first (``RemoteProtocolError`` without a code,
no GoAway queued), then yamux's own checks apply. The native engine decrypts straight
into its yamux input buffer and encrypts straight into the returned bytes.
"""

from __future__ import annotations

from typing import Protocol

from neonet.core.noise_transport import NoiseTransport
from neonet.core.yamux import YamuxConfig, YamuxConnection, YamuxEngine, YamuxEvent

__all__ = ["NoiseYamuxConnection", "NoiseYamuxEngine"]


class NoiseYamuxEngine(YamuxEngine, Protocol):
    """The interface both backends' ``NoiseYamuxConnection`` implement."""

    def receive_plaintext(self, data: bytes | bytearray | memoryview) -> list[YamuxEvent]: ...


class NoiseYamuxConnection(YamuxConnection):
    """A yamux connection whose input and output are Noise ciphertext.

    Takes the channel over from ``noise`` (``noise.take()``: the given transport refuses
    all use afterwards). Every ``YamuxConnection`` command works unchanged.
    """

    def __init__(
        self, noise: NoiseTransport, *, is_client: bool, config: YamuxConfig | None = None
    ) -> None:
        super().__init__(is_client=is_client, config=config)
        self._noise = noise.take()

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[YamuxEvent]:
        """Decrypt ``data`` (any chunk of the byte stream) and parse every whole frame."""
        return super().receive_data(self._noise.receive_data(data))

    def receive_plaintext(self, data: bytes | bytearray | memoryview) -> list[YamuxEvent]:
        """Parse bytes that are already plaintext (read past a negotiation, say)."""
        return super().receive_data(data)

    def data_to_send(self) -> bytes:
        """Return and clear everything queued for the peer, framed and encrypted."""
        return self._noise.encrypt(super().data_to_send())
