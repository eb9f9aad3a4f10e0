"""The exception hierarchy shared by every NeoNet layer.

Errors say whose fault it was: ``LocalProtocolError`` when our own caller misused an
engine or API, ``RemoteProtocolError`` when the peer sent something wrong. Both carry an
optional wire error code where the protocol defines one (yamux GoAway codes, for
example).
"""

from __future__ import annotations


class NeoNetError(Exception):
    """Base class of every error NeoNet raises on purpose."""


class ProtocolError(NeoNetError):
    """A protocol rule was broken; ``code`` is the wire error code, if any."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """Our caller asked an engine to do something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The remote peer sent something the protocol forbids (malformed, oversized, out of order)."""


class DecodeError(RemoteProtocolError, ValueError):
    """Bytes that do not decode to a valid value (varints, keys, multiaddrs, protobufs)."""


class HandshakeError(RemoteProtocolError):
    """A security handshake failed: bad signature, wrong peer, bad payload."""


class PeerIdMismatchError(HandshakeError):
    """The peer proved a different identity from the one we dialed."""


class NegotiationError(RemoteProtocolError):
    """multistream-select found no protocol both sides speak."""


class LimitExceededError(NeoNetError):
    """A configured limit (connections, streams, message size, backlog) was hit."""


class TransportError(NeoNetError):
    """Dialing or listening failed at the transport level."""
