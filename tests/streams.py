"""Stream helpers shared by the tests: an echo handler, read-to-EOF, a full exchange."""

from __future__ import annotations

import trio

from neonet.node import Stream


async def echo(stream: Stream) -> None:
    """Write back everything until the peer half-closes, then half-close too."""
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.send_eof()


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some():
        data += chunk
    return bytes(data)


async def exchange(stream: Stream, payload: bytes) -> bytes:
    """Send ``payload`` and half-close while reading everything the peer sends back."""
    received = bytearray()

    async def reader() -> None:
        while chunk := await stream.receive_some():
            received.extend(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await stream.send_all(payload)
        await stream.send_eof()
    await stream.aclose()
    return bytes(received)
