"""Connect requests: a control message SSN clients carry inside a signal (issue 6,
"DCUtR driven from the SSN client") to reverse a connection.

When a caller can reach none of a peer's published addresses (no listener the caller
can reach, no relay reservation), it signals the peer through the SSNs, which forward
signal payloads without reading them, asking it to dial back at the caller's own
addresses (direct or ``/p2p-circuit``). The receiving client handles such signals itself
and never hands them to the application.

Wire form (versioned; canonical CBOR, ARCHITECTURE.md decision 2)::

    PREFIX || cbor([version, [multiaddr bytes, ...]])

``PREFIX`` starts with a NUL byte, which no text payload (an SDP offer, JSON) starts
with. A payload with the prefix that does not decode, or has another version, is a
``RemoteProtocolError`` (dropped, never passed on as application data). At most
``MAX_ADDRS`` addresses of at most ``MAX_ADDR_BYTES`` each.
"""

from __future__ import annotations

from dataclasses import dataclass

from neonet.core import cbor
from neonet.core.errors import DecodeError, RemoteProtocolError
from neonet.core.multiaddr import Multiaddr

PREFIX = b"\x00neonet/connect-request\x00"
VERSION = 1
MAX_ADDRS = 8
MAX_ADDR_BYTES = 256


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """Dial me back at ``addrs``."""

    addrs: tuple[Multiaddr, ...]


def encode_connect_request(request: ConnectRequest) -> bytes:
    raw = [address.to_bytes() for address in request.addrs[:MAX_ADDRS]]
    return PREFIX + cbor.encode([VERSION, [a for a in raw if len(a) <= MAX_ADDR_BYTES]])


def is_connect_request(payload: bytes) -> bool:
    return payload.startswith(PREFIX)


def decode_connect_request(payload: bytes) -> ConnectRequest:
    """Decode a payload for which ``is_connect_request`` holds; ``RemoteProtocolError``
    (``DecodeError``) if it is malformed or of another version."""
    if not is_connect_request(payload):
        raise DecodeError("not a connect request")
    value = cbor.decode(payload[len(PREFIX) :])
    if not (isinstance(value, list) and len(value) == 2):
        raise DecodeError("a connect request is [version, addrs]")
    version, addrs = value
    if type(version) is not int or version != VERSION:
        raise RemoteProtocolError(f"unsupported connect request version {version!r}")
    if not isinstance(addrs, list) or len(addrs) > MAX_ADDRS:
        raise DecodeError(f"a connect request carries a list of at most {MAX_ADDRS} addresses")
    decoded: list[Multiaddr] = []
    for raw in addrs:
        if not isinstance(raw, bytes) or len(raw) > MAX_ADDR_BYTES:
            raise DecodeError(f"addresses are byte strings of at most {MAX_ADDR_BYTES} bytes")
        try:
            decoded.append(Multiaddr.from_bytes(raw))
        except (DecodeError, ValueError) as exc:
            raise DecodeError(f"bad address in a connect request: {exc}") from None
    return ConnectRequest(tuple(decoded))
