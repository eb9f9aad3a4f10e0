"""/perf/1.0.0 (libp2p/specs perf/perf.md).

The client sends how many bytes it wants back as a big-endian u64, then uploads any
amount of data and closes its write side; the server reads the u64, drains the upload
to EOF, and only then sends the requested bytes and closes.

The upload's length is not announced, so the server cannot know how much is still to
come: ``PerfServerState`` parses the request, counts (and discards) upload bytes, and
at EOF says how many bytes to send. The spec allows any u64, but the spec also says
perf lets clients make a server do a lot of work; requests above a configurable limit
(16 GiB by default) are refused, which also refuses the "download max u64 until a
timer ends" variant unless the operator raises the limit. Bounding how long an upload
may last is the caller's job (a deadline on the stream).
"""

from __future__ import annotations

from dataclasses import dataclass

from neonet.core.errors import DecodeError, LocalProtocolError, RemoteProtocolError

PROTOCOL_ID = "/perf/1.0.0"
REQUEST_SIZE = 8
MAX_U64 = 2**64 - 1
DEFAULT_MAX_DOWNLOAD_BYTES = 16 * 1024**3


@dataclass(frozen=True, slots=True)
class PerfRequest:
    """The parsed client request: how many bytes the server must send back."""

    download_bytes: int


def encode_perf_request(download_bytes: int) -> bytes:
    """The 8-byte request header."""
    if not 0 <= download_bytes <= MAX_U64:
        raise LocalProtocolError("perf download size must fit in a u64")
    return download_bytes.to_bytes(REQUEST_SIZE, "big")


def decode_perf_request(header: bytes, *, limit: int = DEFAULT_MAX_DOWNLOAD_BYTES) -> int:
    """The requested byte count from a complete 8-byte header.

    ``DecodeError`` if the header is not 8 bytes, ``RemoteProtocolError`` over ``limit``.
    """
    if len(header) != REQUEST_SIZE:
        raise DecodeError(f"perf request header must be {REQUEST_SIZE} bytes")
    requested = int.from_bytes(header, "big")
    if requested > limit:
        raise RemoteProtocolError(
            f"perf request for {requested} bytes exceeds the limit of {limit}"
        )
    return requested


class PerfServerState:
    """The server's view of one perf stream while it reads: request, then upload to EOF."""

    def __init__(self, *, max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES) -> None:
        if max_download_bytes < 0:
            raise LocalProtocolError("max_download_bytes must not be negative")
        self._limit = max_download_bytes
        self._header = bytearray()
        self._eof = False
        self.request: PerfRequest | None = None
        self.upload_bytes = 0  # upload bytes received and discarded so far

    def receive_data(self, data: bytes | bytearray | memoryview) -> PerfRequest | None:
        """Feed received bytes; return the request in the call that completes it, else None.

        Upload bytes are only counted: the caller should drop ``data`` after this call.
        """
        if self._eof:
            raise LocalProtocolError("perf stream already ended")
        parsed: PerfRequest | None = None
        used = 0
        if self.request is None:
            used = min(REQUEST_SIZE - len(self._header), len(data))
            self._header += data[:used]
            if len(self._header) == REQUEST_SIZE:
                parsed = PerfRequest(decode_perf_request(bytes(self._header), limit=self._limit))
                self.request = parsed
        self.upload_bytes += len(data) - used
        return parsed

    def eof(self) -> int:
        """The client closed its write side: the number of bytes to send back now."""
        if self._eof:
            raise LocalProtocolError("perf stream already ended")
        self._eof = True
        if self.request is None:
            raise RemoteProtocolError(
                f"perf stream ended after {len(self._header)} of {REQUEST_SIZE} header bytes"
            )
        return self.request.download_bytes
