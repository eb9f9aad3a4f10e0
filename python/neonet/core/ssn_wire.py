"""The SSN signal path's messages, parsed and built without a general CBOR codec.

A signal crosses five messages, each decoded and encoded once per hop: SIGNAL,
SIGNAL_SENT and INCOMING of the client protocol ``/neonet/ssn/client/1.0.0`` and FORWARD
and FORWARDED of the federation protocol ``/neonet/ssn/federation/1.0.0`` (their wire
format is in ``neonet.proto.ssn.client_protocol`` and ``neonet.proto.ssn.federation``:
canonical CBOR arrays, RFC 8949 §4.2.1). Their layout is fixed, so they are read and
written here byte by byte; everything else (and anything this parser does not accept)
goes to the protocols' general decoders, which explain what is wrong.

``split_frames`` cuts a stream into those frames (``client_protocol.FrameDecoder``).
The contract, checked by a differential Hypothesis test against those decoders::

    parse_signal_path(body, federation) is None
        or parse_signal_path(body, federation) == fields of decode_message(body)
    encode_*(...) == frame(encode_message(<the same message>))

``parse_signal_path`` returns a tuple whose first item is the message kind: client
``(5, rid, to, payload)`` SIGNAL, ``(6, rid, status)`` SIGNAL_SENT, ``(8, 0, sender,
payload)`` INCOMING; federation ``(2, rid, sender, to, payload)`` FORWARD, ``(5, rid,
status)`` FORWARDED.

This is the pure twin of ``neonet._native.ssn_parse_signal_path`` and the
``ssn_encode_*`` functions (crates/neonet-core ``ssn_wire.rs``); ``neonet.core.backend``
picks one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from neonet.core.errors import DecodeError
from neonet.core.peer_id_multihash import check_multihash
from neonet.core.varint import encode_uvarint, try_decode_uvarint

__all__ = [
    "PURE",
    "SsnWire",
    "encode_forward",
    "encode_incoming",
    "encode_signal",
    "encode_status",
    "parse_signal_path",
    "split_frames",
]

# Limits of the protocols (client_protocol.MAX_FRAME, MAX_ID_LENGTH, MAX_REQUEST_ID).
_MAX_BLOB = 64 << 10
_MAX_ID_LENGTH = 128
_MAX_REQUEST_ID = (1 << 63) - 1

# (kind, request ID, then ints or bytes by kind: see the module docstring)
Parsed = tuple[Any, ...]


def _uint(body: bytes, offset: int) -> tuple[int, int]:
    """A canonical CBOR unsigned integer (major type 0) at ``offset``; ``ValueError``."""
    head = body[offset]
    if head < 0x18:
        return head, offset + 1
    if head == 0x18:
        value, end = body[offset + 1], offset + 2
        if value < 0x18:
            raise ValueError("non-canonical")
    elif head == 0x19:
        value, end = int.from_bytes(body[offset + 1 : offset + 3], "big"), offset + 3
        if value < 0x100:
            raise ValueError("non-canonical")
    elif head == 0x1A:
        value, end = int.from_bytes(body[offset + 1 : offset + 5], "big"), offset + 5
        if value < 0x10000:
            raise ValueError("non-canonical")
    elif head == 0x1B:
        value, end = int.from_bytes(body[offset + 1 : offset + 9], "big"), offset + 9
        if value < 0x100000000:
            raise ValueError("non-canonical")
    else:
        raise ValueError("not an unsigned integer")
    if end > len(body):
        raise ValueError("truncated")
    return value, end


def _blob(body: bytes, offset: int, limit: int) -> tuple[bytes, int]:
    """A canonical CBOR byte string (major type 2) of at most ``limit`` bytes."""
    head = body[offset]
    if not 0x40 <= head <= 0x5B:
        raise ValueError("not a byte string")
    length, start = _uint(bytes((head - 0x40,)) + body[offset + 1 : offset + 9], 0)
    start += offset
    end = start + length
    if length > limit or end > len(body):
        raise ValueError("too long or truncated")
    return body[start:end], end


def _is_peer_id(raw: bytes) -> bool:
    """What ``PeerId(raw)`` accepts, for IDs of the protocols' 1 to 128 bytes."""
    if not 0 < len(raw) <= _MAX_ID_LENGTH:
        return False
    try:
        check_multihash(raw)
    except DecodeError:
        return False
    return True


def _arguments(*values: object) -> None:
    """Refuse arguments as the native binding's argument conversion does (same
    exception types, in argument order): ``bytes`` for byte strings (not bytearray or
    memoryview), ``bool`` for flags (``_Flag``), and ints within the binding's i128
    (``_I128``) or u64 (``_U64``), else ``OverflowError``."""
    for value in values:
        if isinstance(value, _U64):
            if not isinstance(value.value, int):
                raise TypeError("an integer is required")
            if not 0 <= value.value < 1 << 64:
                raise OverflowError("out of range integral type conversion attempted")
        elif isinstance(value, _Flag):
            if not isinstance(value.value, bool):
                raise TypeError("a bool is required")
        elif isinstance(value, _I128):
            if not isinstance(value.value, int):
                raise TypeError("an integer is required")
            if not -(1 << 127) <= value.value < 1 << 127:
                raise OverflowError("out of range integral type conversion attempted")
        elif not isinstance(value, bytes):
            raise TypeError(f"bytes required, not {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class _I128:
    value: object


@dataclass(frozen=True, slots=True)
class _U64:
    value: object


@dataclass(frozen=True, slots=True)
class _Flag:
    value: object


def parse_signal_path(body: bytes, federation: bool) -> Parsed | None:
    """The fields of a signal-path message (see the module docstring), or None for any
    other message and anything not accepted here (the general decoder then decides)."""
    _arguments(body, _Flag(federation))
    try:
        return _parse(body, federation)
    except (ValueError, IndexError):
        return None


def _parse(body: bytes, federation: bool) -> Parsed | None:
    if not 4 <= len(body) <= _MAX_BLOB or body[1] != 0x01:  # [1, kind, ...]
        return None
    head, kind = body[0], body[2]
    rid, offset = _uint(body, 3)
    if rid > _MAX_REQUEST_ID:
        return None
    if federation:
        if head == 0x86 and kind == 2:  # FORWARD
            sender, offset = _blob(body, offset, _MAX_ID_LENGTH)
            to, offset = _blob(body, offset, _MAX_ID_LENGTH)
            payload, offset = _blob(body, offset, _MAX_BLOB)
            if offset == len(body) and _is_peer_id(sender) and _is_peer_id(to):
                return (2, rid, sender, to, payload)
        elif head == 0x84 and kind == 5 and offset + 1 == len(body) and body[offset] < 2:
            return (5, rid, body[offset])  # FORWARDED
        return None
    if head == 0x85 and kind in (5, 8):  # SIGNAL, INCOMING
        if kind == 8 and rid != 0:
            return None
        peer, offset = _blob(body, offset, _MAX_ID_LENGTH)
        payload, offset = _blob(body, offset, _MAX_BLOB)
        if offset == len(body) and _is_peer_id(peer):
            return (kind, rid, peer, payload)
    elif head == 0x84 and kind == 6 and offset + 1 == len(body) and body[offset] < 2:
        return (6, rid, body[offset])  # SIGNAL_SENT
    return None


def _uint_head(major: int, value: int) -> bytes:
    if value < 0x18:
        return bytes((major | value,))
    if value < 0x100:
        return bytes((major | 0x18, value))
    if value < 0x10000:
        return bytes((major | 0x19,)) + value.to_bytes(2, "big")
    if value < 0x100000000:
        return bytes((major | 0x1A,)) + value.to_bytes(4, "big")
    return bytes((major | 0x1B,)) + value.to_bytes(8, "big")


def _framed(body: bytes) -> bytes:
    return encode_uvarint(len(body)) + body


def _check(rid: int, *blobs: bytes) -> None:
    if not 0 <= rid <= _MAX_REQUEST_ID:
        raise ValueError("request ID out of range")
    if any(len(blob) > _MAX_BLOB for blob in blobs):
        raise ValueError("byte string too long")


def encode_signal(rid: int, to: bytes, payload: bytes) -> bytes:
    """The frame (length prefix included) of client SIGNAL ``[1, 5, rid, to, payload]``."""
    _arguments(_I128(rid), to, payload)
    _check(rid, to, payload)
    return _framed(
        b"\x85\x01\x05"
        + _uint_head(0, rid)
        + _uint_head(0x40, len(to))
        + to
        + _uint_head(0x40, len(payload))
        + payload
    )


def encode_incoming(sender: bytes, payload: bytes) -> bytes:
    """The frame of client INCOMING ``[1, 8, 0, sender, payload]``."""
    _arguments(sender, payload)
    _check(0, sender, payload)
    return _framed(
        b"\x85\x01\x08\x00"
        + _uint_head(0x40, len(sender))
        + sender
        + _uint_head(0x40, len(payload))
        + payload
    )


def encode_forward(rid: int, sender: bytes, to: bytes, payload: bytes) -> bytes:
    """The frame of federation FORWARD ``[1, 2, rid, sender, to, payload]``."""
    _arguments(_I128(rid), sender, to, payload)
    _check(rid, sender, to, payload)
    return _framed(
        b"\x86\x01\x02"
        + _uint_head(0, rid)
        + _uint_head(0x40, len(sender))
        + sender
        + _uint_head(0x40, len(to))
        + to
        + _uint_head(0x40, len(payload))
        + payload
    )


def encode_status(federation: bool, rid: int, status: int) -> bytes:
    """The frame of client SIGNAL_SENT ``[1, 6, rid, status]`` or, ``federation``,
    FORWARDED ``[1, 5, rid, status]`` (status 0 delivered, 1 queued)."""
    _arguments(_Flag(federation), _I128(rid), _I128(status))
    _check(rid)
    if status not in (0, 1):
        raise ValueError("unknown signal status")
    return _framed(
        (b"\x84\x01\x05" if federation else b"\x84\x01\x06") + _uint_head(0, rid) + bytes((status,))
    )


def split_frames(data: bytes, max_frame: int) -> tuple[list[bytes], int]:
    """Split whole frames (an unsigned varint length, then the body) off ``data``: the
    bodies and how many bytes they used; the rest waits for more. ``DecodeError`` for a
    bad varint or a frame over ``max_frame`` bytes (announced, not yet arrived)."""
    _arguments(data, _U64(max_frame))
    frames: list[bytes] = []
    offset = 0
    while True:
        head = try_decode_uvarint(data, offset)
        if head is None:
            return frames, offset
        length, start = head
        if length > max_frame:
            raise DecodeError(f"frame of {length} bytes exceeds {max_frame}")
        if len(data) - start < length:
            return frames, offset
        offset = start + length
        frames.append(data[start:offset])


@dataclass(frozen=True, slots=True)
class SsnWire:
    """One backend's functions (``neonet.core.backend.ssn_wire``)."""

    parse_signal_path: Callable[[bytes, bool], Parsed | None]
    encode_signal: Callable[[int, bytes, bytes], bytes]
    encode_incoming: Callable[[bytes, bytes], bytes]
    encode_forward: Callable[[int, bytes, bytes, bytes], bytes]
    encode_status: Callable[[bool, int, int], bytes]
    split_frames: Callable[[bytes, int], tuple[list[bytes], int]]


PURE = SsnWire(
    parse_signal_path, encode_signal, encode_incoming, encode_forward, encode_status, split_frames
)
