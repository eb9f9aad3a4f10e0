"""The synchronous stream paths that pubsub uses: ``send_nowait`` and ``set_data_callback``.

Two NeoNet nodes over real loopback sockets (TCP, Noise, yamux), on the selected backend.
"""

from __future__ import annotations

import pytest
import trio

from neonet.core.errors import RemoteProtocolError
from neonet.net.yamux_session import YamuxStream
from neonet.node import Stream, open_node
from tests.streams import read_all

COLLECT = "/collect/1.0.0"
TIMEOUT = 20


async def test_send_nowait_queues_what_the_window_takes_in_order() -> None:
    received: list[bytes] = []
    done = trio.Event()

    async def collect(stream: Stream) -> None:
        received.append(await read_all(stream))
        done.set()

    with trio.fail_after(TIMEOUT):
        async with open_node() as server, open_node(listen=()) as client:
            server.set_stream_handler(COLLECT, collect)
            peer = await client.connect(server.listen_addrs[0])
            stream = await client.new_stream(peer, [COLLECT])
            small = [bytes([i]) * 100 for i in range(50)]
            for chunk in small:
                assert stream.send_nowait(chunk) == len(chunk)
            assert stream.send_nowait(b"") == 0
            # More than the 256 KiB window: only part is taken now, the rest is the
            # caller's to send (in order, after it).
            big = bytes(range(256)) * 2048
            taken = stream.send_nowait(big)
            assert 0 < taken < len(big)
            await stream.send_all(big[taken:])
            await stream.send_eof()
            await done.wait()
            assert received == [b"".join(small) + big]


async def test_data_callback_gets_buffered_then_new_data_and_the_end() -> None:
    chunks: list[bytes] = []
    ended = trio.Event()
    callback_set = trio.Event()
    first_sent = trio.Event()

    async def handler(stream: Stream) -> None:
        await first_sent.wait()  # the first bytes are buffered by now
        stream.set_data_callback(chunks.append)
        callback_set.set()
        assert await stream.receive_some() == b""  # the callback took everything
        ended.set()

    with trio.fail_after(TIMEOUT):
        async with open_node() as server, open_node(listen=()) as client:
            server.set_stream_handler(COLLECT, handler)
            peer = await client.connect(server.listen_addrs[0])
            stream = await client.new_stream(peer, [COLLECT])
            await stream.send_all(b"before ")
            await stream.session.ping()  # answered after the peer's reader took the data
            first_sent.set()
            await callback_set.wait()
            assert b"".join(chunks) == b"before "
            await stream.send_all(b"after" * 1000)
            await stream.send_eof()
            await ended.wait()
            assert b"".join(chunks) == b"before " + b"after" * 1000


async def test_a_failing_callback_resets_only_its_stream() -> None:
    errors: list[Exception | None] = []
    finished = trio.Event()

    def refuse(data: bytes) -> None:
        raise RemoteProtocolError("bad bytes")

    async def handler(stream: Stream) -> None:
        stream.set_data_callback(refuse)
        try:
            await stream.receive_some()
        except trio.ClosedResourceError:
            errors.append(stream.callback_error)
        finished.set()

    with trio.fail_after(TIMEOUT):
        async with open_node() as server, open_node(listen=()) as client:
            server.set_stream_handler(COLLECT, handler)
            peer = await client.connect(server.listen_addrs[0])
            stream = await client.new_stream(peer, [COLLECT])
            await stream.send_all(b"garbage")
            await finished.wait()
            assert len(errors) == 1
            assert isinstance(errors[0], RemoteProtocolError)
            with pytest.raises(trio.BrokenResourceError):
                await read_all(stream)  # the reset reaches the sender
            assert len(await client.ping(peer)) == 1  # the connection lives on


class _CreditLog:
    """What a ``YamuxStream`` asks of its session while receiving: window credits."""

    _dead = None

    def __init__(self) -> None:
        self.credited = 0

    def _engine_consume(self, stream_id: int, amount: int) -> None:
        self.credited += amount


async def test_receive_some_returns_the_small_frames_of_a_read_together() -> None:
    """Frames that arrived together come out of one ``receive_some`` (up to
    ``max_bytes``), in order, each byte credited once: a reader handles a read in one
    pass instead of a scheduler pass per frame (SSN signals)."""
    session = _CreditLog()
    stream = YamuxStream(session, 1)  # type: ignore[arg-type]
    frames = [bytes([i]) * 30 for i in range(10)]
    for data in frames:
        stream._on_data(data)
    assert await stream.receive_some(100) == b"".join(frames[:3])
    assert await stream.receive_some() == frames[3]  # no limit: one frame as before
    assert await stream.receive_some(10) == frames[4][:10]  # a part of a frame
    assert await stream.receive_some(1000) == frames[4][10:] + b"".join(frames[5:])
    assert session.credited == 300


async def test_receive_some_hands_out_large_chunks_without_joining() -> None:
    """Chunks of a bulk transfer (one per socket read, >= 64 KiB) come out one per
    ``receive_some`` as the very objects received: joining them copied each byte once
    more. Small chunks before a large one are still joined, without it."""
    session = _CreditLog()
    stream = YamuxStream(session, 1)  # type: ignore[arg-type]
    large = [bytes([i]) * (200 * 1024) for i in range(3)]
    small = [b"a" * 100, b"b" * 100]
    for data in [*large, *small, large[0]]:
        stream._on_data(data)
    for data in large:
        assert await stream.receive_some(1024 * 1024) is data
    assert await stream.receive_some(1024 * 1024) == b"".join(small)
    assert await stream.receive_some(1024 * 1024) is large[0]
    assert session.credited == 4 * 200 * 1024 + 200
