"""/perf/1.0.0 (libp2p/specs perf/perf.md): upload N bytes, download M bytes, time both."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from neonet.core.errors import RemoteProtocolError
from neonet.core.peer_id import PeerId
from neonet.net.host import Host
from neonet.net.yamux_session import YamuxStream
from neonet.proto.perf import (
    DEFAULT_MAX_DOWNLOAD_BYTES,
    PROTOCOL_ID,
    decode_perf_request,
    encode_perf_request,
)

# The client writes 1 MiB at a time: with 256 KiB writes the session's per-write work
# (a scheduler pass, a wake-up of the writer, an encryption call and a send) cost the
# uploader about 30% more CPU per byte (measured A/B, docs/benchmarks.md).
CHUNK = 1024 * 1024
_ZEROS = bytes(CHUNK)


@dataclass(frozen=True, slots=True)
class PerfResult:
    """Timings of one exchange.

    The server answers only after draining the whole upload, so ``upload_seconds`` runs
    until the first byte of the answer (or its EOF) arrives and ``download_seconds``
    from then until the EOF: both count bytes the peer really received.
    """

    upload_bytes: int
    download_bytes: int
    upload_seconds: float
    download_seconds: float
    total_seconds: float


async def handle_perf(stream: YamuxStream) -> None:
    """Server: read the 8-byte request, drain the upload to EOF, then send the bytes asked for."""
    header = bytearray()
    while len(header) < 8:
        chunk = await stream.receive_some(8 - len(header))
        if not chunk:
            raise RemoteProtocolError("perf stream ended before its 8-byte header")
        header += chunk
    # The limit bounds what one stream can make us send.
    requested = decode_perf_request(bytes(header), limit=DEFAULT_MAX_DOWNLOAD_BYTES)
    while await stream.receive_some(CHUNK):
        pass
    await _send_zeros(stream, requested)
    await stream.send_eof()


async def _send_zeros(stream: trio.abc.SendStream, amount: int) -> None:
    view = memoryview(_ZEROS)
    while amount:
        step = min(amount, CHUNK)
        await stream.send_all(view[:step])
        amount -= step


async def perf(host: Host, peer: PeerId, *, upload_bytes: int, download_bytes: int) -> PerfResult:
    """Run one perf exchange against ``peer``."""
    start = trio.current_time()
    stream = await host.new_stream(peer, [PROTOCOL_ID])
    try:
        await stream.send_all(encode_perf_request(download_bytes))
        await _send_zeros(stream, upload_bytes)
        await stream.send_eof()
        chunk = await stream.receive_some(CHUNK)
        uploaded = trio.current_time()
        received = len(chunk)
        while chunk:
            chunk = await stream.receive_some(CHUNK)
            received += len(chunk)
        done = trio.current_time()
    finally:
        await stream.aclose()
    if received != download_bytes:
        raise RemoteProtocolError(f"perf server sent {received} bytes, expected {download_bytes}")
    return PerfResult(upload_bytes, received, uploaded - start, done - uploaded, done - start)
