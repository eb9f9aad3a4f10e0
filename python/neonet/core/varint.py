"""Unsigned varints (multiformats/unsigned-varint): LEB128, at most 9 bytes, minimal form.

Used by multiaddrs, multihashes, multistream-select and every length-prefixed libp2p
message. Decoders refuse non-minimal encodings and values above 2**63 - 1, as the
multiformats spec requires.
"""

from __future__ import annotations

from neonet.core.errors import DecodeError

MAX_VARINT_BYTES = 9
MAX_VARINT_VALUE = (1 << 63) - 1


def encode_uvarint(value: int) -> bytes:
    """Encode a non-negative integer as an unsigned varint."""
    if value < 0 or value > MAX_VARINT_VALUE:
        raise ValueError(f"varint out of range: {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode one varint at ``offset``; return ``(value, offset_after)``.

    Raises ``DecodeError`` if the varint is truncated, longer than 9 bytes or not minimal.
    """
    value = 0
    shift = 0
    end = len(data)
    for index in range(offset, min(end, offset + MAX_VARINT_BYTES)):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and index != offset:
                raise DecodeError("non-minimal varint")
            return value, index + 1
        shift += 7
    if end - offset >= MAX_VARINT_BYTES:
        raise DecodeError("varint longer than 9 bytes")
    raise DecodeError("truncated varint")


def try_decode_uvarint(
    data: bytes | bytearray | memoryview, offset: int = 0
) -> tuple[int, int] | None:
    """Like ``decode_uvarint`` but return None when more bytes are needed (streaming parsers)."""
    end = len(data)
    for index in range(offset, min(end, offset + MAX_VARINT_BYTES)):
        if not data[index] & 0x80:
            return decode_uvarint(data, offset)
    if end - offset >= MAX_VARINT_BYTES:
        raise DecodeError("varint longer than 9 bytes")
    return None
