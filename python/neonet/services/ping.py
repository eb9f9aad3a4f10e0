"""/ipfs/ping/1.0.0 (libp2p/specs ping/ping.md): 32 random bytes, echoed back."""

from __future__ import annotations

import os

import trio

from neonet.core.errors import RemoteProtocolError
from neonet.core.peer_id import PeerId
from neonet.net.host import Host
from neonet.net.yamux_session import YamuxStream
from neonet.proto.ping import PAYLOAD_SIZE, PROTOCOL_ID, PingServer

# A ping stream that sends more than this without a pause is misbehaving.
MAX_PINGS_PER_STREAM = 1_000_000


async def handle_ping(stream: YamuxStream) -> None:
    """Echo each 32-byte payload until the peer closes its side."""
    server = PingServer()
    echoed = 0
    while echoed < MAX_PINGS_PER_STREAM:
        data = await stream.receive_some(4096)
        if not data:
            return
        echo = server.receive_data(data)
        if echo:
            await stream.send_all(echo)
            echoed += len(echo) // PAYLOAD_SIZE


async def _receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise RemoteProtocolError("peer closed the ping stream early")
        data += chunk
    return bytes(data)


async def ping(host: Host, peer: PeerId, *, count: int = 1) -> list[float]:
    """Ping ``peer`` ``count`` times on one stream; return the round-trip times in seconds."""
    stream = await host.new_stream(peer, [PROTOCOL_ID])
    times: list[float] = []
    try:
        for _ in range(count):
            payload = os.urandom(PAYLOAD_SIZE)
            start = trio.current_time()
            await stream.send_all(payload)
            answer = await _receive_exactly(stream, PAYLOAD_SIZE)
            times.append(trio.current_time() - start)
            if answer != payload:
                raise RemoteProtocolError("ping answer does not match the payload")
        await stream.send_eof()
    finally:
        await stream.aclose()
    return times
