"""/perf/1.0.0 (libp2p/specs perf/perf.md).

The client sends the number of bytes it wants back as a big-endian u64, then uploads
its bytes and closes its write side; the server drains the upload, then sends the
requested bytes and closes.
"""

from __future__ import annotations

from neonet.core.errors import DecodeError

PROTOCOL_ID = "/perf/1.0.0"
REQUEST_SIZE = 8


def encode_perf_request(download_bytes: int) -> bytes:
    if not 0 <= download_bytes < 2**64:
        raise ValueError("download size must fit in a u64")
    return download_bytes.to_bytes(REQUEST_SIZE, "big")


def decode_perf_request(header: bytes, *, limit: int) -> int:
    """The requested byte count; ``DecodeError`` if the header is short or over ``limit``."""
    if len(header) != REQUEST_SIZE:
        raise DecodeError("perf request header must be 8 bytes")
    requested = int.from_bytes(header, "big")
    if requested > limit:
        raise DecodeError(f"perf request of {requested} bytes exceeds the limit of {limit}")
    return requested
