"""Multiaddrs (multiformats/multiaddr): self-describing network addresses.

Text form ``/ip4/127.0.0.1/tcp/4001/p2p/12D3Koo...`` and the binary form (varint
protocol code, then the value: fixed size, or varint length + bytes). The protocol
table holds what NeoNet dials or prints; unknown codes are a ``DecodeError``.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from neonet.core.errors import DecodeError
from neonet.core.peer_id import PeerId
from neonet.core.varint import decode_uvarint, encode_uvarint

MAX_MULTIADDR_BYTES = 1024
MAX_COMPONENTS = 32


@dataclass(frozen=True, slots=True)
class Protocol:
    code: int
    name: str
    # Value size in bytes: 0 for no value, -1 for varint-length-prefixed.
    size: int


_PROTOCOLS = (
    Protocol(4, "ip4", 4),
    Protocol(6, "tcp", 2),
    Protocol(273, "udp", 2),
    Protocol(41, "ip6", 16),
    Protocol(42, "ip6zone", -1),
    Protocol(53, "dns", -1),
    Protocol(54, "dns4", -1),
    Protocol(55, "dns6", -1),
    Protocol(56, "dnsaddr", -1),
    Protocol(421, "p2p", -1),
    Protocol(290, "p2p-circuit", 0),
    Protocol(477, "ws", 0),
    Protocol(478, "wss", 0),
    Protocol(448, "tls", 0),
    Protocol(449, "sni", -1),
    Protocol(460, "quic", 0),
    Protocol(461, "quic-v1", 0),
    Protocol(465, "webtransport", 0),
    Protocol(466, "certhash", -1),
    Protocol(280, "webrtc-direct", 0),
    Protocol(281, "webrtc", 0),
)
PROTOCOLS_BY_NAME = {protocol.name: protocol for protocol in _PROTOCOLS}
PROTOCOLS_BY_CODE = {protocol.code: protocol for protocol in _PROTOCOLS}
_TEXT_ALIASES = {"ipfs": "p2p"}


def _decode_multibase(text: str) -> bytes:
    """Decode the multibase forms certhash values use (u, m, b, z, f)."""
    if not text:
        raise DecodeError("empty multibase value")
    prefix, body = text[0], text[1:]
    try:
        if prefix == "u":
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        if prefix == "m":
            return base64.b64decode(body + "=" * (-len(body) % 4))
        if prefix == "b":
            return base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        if prefix == "f":
            return bytes.fromhex(body)
        if prefix == "z":
            from neonet.core import backend

            return backend.base58btc_decode(body)
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"invalid multibase value {text!r}: {exc}") from exc
    raise DecodeError(f"unsupported multibase prefix {prefix!r}")


def _value_from_text(protocol: Protocol, text: str) -> bytes:
    name = protocol.name
    try:
        if name == "ip4":
            return ipaddress.IPv4Address(text).packed
        if name == "ip6":
            return ipaddress.IPv6Address(text).packed
        if name in ("tcp", "udp"):
            if not text.isdigit():
                raise ValueError("port is not a number")
            port = int(text)
            if port > 0xFFFF:
                raise ValueError("port above 65535")
            return port.to_bytes(2, "big")
    except ValueError as exc:
        raise DecodeError(f"invalid /{name} value {text!r}: {exc}") from exc
    if name == "p2p":
        return PeerId.from_string(text).to_bytes()
    if name == "certhash":
        digest = _decode_multibase(text)
        _check_certhash(digest)
        return digest
    if not text:
        raise DecodeError(f"/{name} needs a value")
    return text.encode("utf-8")


def _check_certhash(digest: bytes) -> None:
    _code, offset = decode_uvarint(digest)
    length, offset = decode_uvarint(digest, offset)
    if len(digest) - offset != length:
        raise DecodeError("certhash multihash length does not match its digest")


def _value_to_text(protocol: Protocol, value: bytes) -> str:
    name = protocol.name
    if name == "ip4":
        return str(ipaddress.IPv4Address(value))
    if name == "ip6":
        return str(ipaddress.IPv6Address(value))
    if name in ("tcp", "udp"):
        return str(int.from_bytes(value, "big"))
    if name == "p2p":
        return str(PeerId(value))
    if name == "certhash":
        return "u" + base64.urlsafe_b64encode(value).decode("ascii").rstrip("=")
    return value.decode("utf-8")


def _check_value(protocol: Protocol, value: bytes) -> None:
    if protocol.name == "p2p":
        PeerId(value)
    elif protocol.name == "certhash":
        _check_certhash(value)
    elif protocol.size == -1:
        if not value:
            raise DecodeError(f"/{protocol.name} needs a value")
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"/{protocol.name} value is not UTF-8") from exc
        if "/" in text:
            raise DecodeError(f"/{protocol.name} value may not contain '/'")


class Multiaddr:
    """An immutable, hashable multiaddr; compare and hash by the binary form."""

    __slots__ = ("_bytes", "_components")

    def __init__(self, components: tuple[tuple[Protocol, bytes], ...]) -> None:
        if len(components) > MAX_COMPONENTS:
            raise DecodeError(f"multiaddr has more than {MAX_COMPONENTS} components")
        self._components = components
        encoded = bytearray()
        for protocol, value in components:
            encoded += encode_uvarint(protocol.code)
            if protocol.size == -1:
                encoded += encode_uvarint(len(value))
            encoded += value
        if len(encoded) > MAX_MULTIADDR_BYTES:
            raise DecodeError(f"multiaddr longer than {MAX_MULTIADDR_BYTES} bytes")
        self._bytes = bytes(encoded)

    @classmethod
    def from_string(cls, text: str) -> Multiaddr:
        if len(text) > MAX_MULTIADDR_BYTES * 4:
            raise DecodeError("multiaddr text too long")
        if not text.startswith("/"):
            raise DecodeError(f"multiaddr must start with '/': {text!r}")
        parts = text.rstrip("/").split("/")[1:]
        components: list[tuple[Protocol, bytes]] = []
        index = 0
        while index < len(parts):
            name = _TEXT_ALIASES.get(parts[index], parts[index])
            protocol = PROTOCOLS_BY_NAME.get(name)
            if protocol is None:
                raise DecodeError(f"unknown multiaddr protocol {parts[index]!r} in {text!r}")
            index += 1
            if protocol.size == 0:
                components.append((protocol, b""))
                continue
            if index >= len(parts):
                raise DecodeError(f"/{name} needs a value in {text!r}")
            components.append((protocol, _value_from_text(protocol, parts[index])))
            index += 1
        return cls(tuple(components))

    @classmethod
    def from_bytes(cls, data: bytes) -> Multiaddr:
        if len(data) > MAX_MULTIADDR_BYTES:
            raise DecodeError(f"multiaddr longer than {MAX_MULTIADDR_BYTES} bytes")
        if not data:
            raise DecodeError("empty multiaddr")
        components: list[tuple[Protocol, bytes]] = []
        offset = 0
        while offset < len(data):
            code, offset = decode_uvarint(data, offset)
            protocol = PROTOCOLS_BY_CODE.get(code)
            if protocol is None:
                raise DecodeError(f"unknown multiaddr protocol code {code}")
            size = protocol.size
            if size == -1:
                size, offset = decode_uvarint(data, offset)
            if offset + size > len(data):
                raise DecodeError(f"truncated /{protocol.name} value")
            value = bytes(data[offset : offset + size])
            offset += size
            _check_value(protocol, value)
            components.append((protocol, value))
        return cls(tuple(components))

    def to_bytes(self) -> bytes:
        return self._bytes

    @property
    def components(self) -> tuple[tuple[Protocol, bytes], ...]:
        return self._components

    def protocol_names(self) -> tuple[str, ...]:
        return tuple(protocol.name for protocol, _ in self._components)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """Yield ``(protocol name, text value)`` pairs; the value is "" for flag protocols."""
        for protocol, value in self._components:
            yield protocol.name, _value_to_text(protocol, value) if protocol.size else ""

    def value_for(self, name: str) -> str | None:
        """The text value of the first component called ``name``, or None."""
        for protocol, value in self._components:
            if protocol.name == name:
                return _value_to_text(protocol, value)
        return None

    def peer_id(self) -> PeerId | None:
        """The peer ID of the final /p2p component, if the address ends in one."""
        if self._components and self._components[-1][0].name == "p2p":
            return PeerId(self._components[-1][1])
        return None

    def encapsulate(self, other: Multiaddr | str) -> Multiaddr:
        tail = Multiaddr.from_string(other) if isinstance(other, str) else other
        return Multiaddr(self._components + tail._components)

    def without_peer_id(self) -> Multiaddr:
        if self.peer_id() is None:
            return self
        return Multiaddr(self._components[:-1])

    def with_peer_id(self, peer: PeerId) -> Multiaddr:
        return Multiaddr(
            (*self.without_peer_id()._components, (PROTOCOLS_BY_NAME["p2p"], peer.to_bytes()))
        )

    def __str__(self) -> str:
        return "".join(
            f"/{name}/{value}" if value or PROTOCOLS_BY_NAME[name].size else f"/{name}"
            for name, value in self
        )

    def __repr__(self) -> str:
        return f"Multiaddr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Multiaddr) and other._bytes == self._bytes

    def __hash__(self) -> int:
        return hash(self._bytes)
