"""WebSocketStream and the /ws upgrade: over memory streams, lockstep streams and loopback TCP.

wsproto stands in as an independent peer where the other side must be someone else's
WebSocket code (its masking, fragmentation, ping and close handling), and a small frame
builder here crafts the malformed frames no real library would send.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    Request,
)
from wsproto.frame_protocol import FrameProtocol

from neonet.core.errors import RemoteProtocolError, TransportError
from neonet.net.websocket import (
    MAX_HANDSHAKE_BYTES,
    MAX_MESSAGE_SIZE,
    WebSocketStream,
    accept_websocket,
    connect_websocket,
)
from tests.conftest import has_ipv6_loopback

TIMEOUT = 20
MiB = 1024 * 1024

TransportMaker = Callable[[], Awaitable[tuple[trio.abc.Stream, trio.abc.Stream]]]


async def memory_transports() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    return trio.testing.memory_stream_pair()


async def lockstep_transports() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    return trio.testing.lockstep_stream_pair()


def tcp_transports(host: str) -> TransportMaker:
    async def make() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        listeners = await trio.open_tcp_listeners(0, host=host)
        try:
            port = listeners[0].socket.getsockname()[1]
            # The kernel completes the connection into the backlog: no accept task needed.
            client = await trio.open_tcp_stream(host, port)
            server = await listeners[0].accept()
        finally:
            for listener in listeners:
                await listener.aclose()
        return client, server

    return make


NO_IPV6 = pytest.mark.skipif(
    not has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)"
)
TRANSPORTS = [
    pytest.param(memory_transports, id="memory"),
    pytest.param(tcp_transports("127.0.0.1"), id="tcp4"),
    pytest.param(tcp_transports("::1"), id="tcp6", marks=NO_IPV6),
]


@pytest.fixture(params=TRANSPORTS)
def transports(request: pytest.FixtureRequest) -> TransportMaker:
    maker: TransportMaker = request.param
    return maker


async def handshake(
    client_transport: trio.abc.Stream, server_transport: trio.abc.Stream, **server_options: int
) -> tuple[WebSocketStream, WebSocketStream]:
    result: dict[str, WebSocketStream] = {}

    async def serve() -> None:
        result["server"] = await accept_websocket(server_transport, **server_options)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        result["client"] = await connect_websocket(client_transport, host="localhost")
    return result["client"], result["server"]


async def make_pair(maker: TransportMaker) -> tuple[WebSocketStream, WebSocketStream]:
    return await handshake(*(await maker()))


@asynccontextmanager
async def websocket_pair(
    maker: TransportMaker, **server_options: int
) -> AsyncIterator[tuple[WebSocketStream, WebSocketStream]]:
    client, server = await handshake(*(await maker()), **server_options)
    try:
        yield client, server
    finally:
        await trio.aclose_forcefully(client)
        await trio.aclose_forcefully(server)


async def read_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some()
        assert chunk, "unexpected end of stream"
        data += chunk
    return bytes(data)


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some():
        data += chunk
    return bytes(data)


async def read_http_head(stream: trio.abc.ReceiveStream) -> bytes:
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return bytes(data)


def raw_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = b"\x37\xfa\x21\x3d",
    length_bytes: int | None = None,
) -> bytes:
    """One frame, built by hand so that it can break any rule on request."""
    size = len(payload)
    if length_bytes is None:
        length_bytes = 0 if size < 126 else 2 if size < 0x10000 else 8
    mask_bit = 0x80 if mask is not None else 0
    header = bytes([(0x80 if fin else 0) | rsv | opcode])
    if length_bytes == 0:
        header += bytes([mask_bit | size])
    else:
        header += bytes([mask_bit | (126 if length_bytes == 2 else 127)])
        header += size.to_bytes(length_bytes, "big")
    if mask is not None:
        header += mask
        payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return header + payload


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# --- conformance -----------------------------------------------------------------------------


async def test_trio_stream_conformance_over_memory_and_lockstep() -> None:
    async def stream_maker() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        return await make_pair(memory_transports)

    async def clogged_stream_maker() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        return await make_pair(lockstep_transports)

    await trio.testing.check_two_way_stream(stream_maker, clogged_stream_maker)


async def test_trio_stream_conformance_over_tcp() -> None:
    async def stream_maker() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        return await make_pair(tcp_transports("127.0.0.1"))

    with trio.fail_after(TIMEOUT):
        await trio.testing.check_two_way_stream(stream_maker, None)


# --- data, close, EOF ------------------------------------------------------------------------


async def test_handshake_and_data_both_ways(transports: TransportMaker) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket_pair(transports) as (client, server):
            assert client.is_client
            assert not server.is_client
            await client.send_all(b"hello from the client")
            assert await read_exactly(server, 21) == b"hello from the client"
            await server.send_all(bytearray(b"hello from the server"))
            assert await read_exactly(client, 21) == b"hello from the server"
            await client.send_all(memoryview(b"xyz")[1:])
            assert await read_exactly(server, 2) == b"yz"


async def test_one_mib_each_way_concurrently(transports: TransportMaker) -> None:
    upstream = random_bytes(MiB, 1)
    downstream = random_bytes(MiB, 2)
    received: dict[str, bytes] = {}

    async def receive(name: str, stream: WebSocketStream) -> None:
        received[name] = await read_exactly(stream, MiB)

    with trio.fail_after(TIMEOUT):
        async with websocket_pair(transports) as (client, server):
            async with trio.open_nursery() as nursery:
                # One send_all each, so each is split into several messages.
                nursery.start_soon(client.send_all, upstream)
                nursery.start_soon(server.send_all, downstream)
                nursery.start_soon(receive, "server", server)
                nursery.start_soon(receive, "client", client)
    assert received["server"] == upstream
    assert received["client"] == downstream


async def test_close_gives_eof_and_close_code(transports: TransportMaker) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket_pair(transports) as (client, server):
            await client.send_all(b"last words")
            await client.aclose()
            assert await read_to_eof(server) == b"last words"
            assert await server.receive_some() == b""  # EOF stays EOF
            assert server.close_code == 1000
            with pytest.raises(trio.BrokenResourceError):
                await server.send_all(b"too late")
            await server.aclose()
            with pytest.raises(trio.ClosedResourceError):
                await server.receive_some()
            with pytest.raises(trio.ClosedResourceError):
                await client.send_all(b"x")


async def test_connection_lost_without_close_frame_is_broken(transports: TransportMaker) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket_pair(transports) as (client, server):
            await client.send_all(b"abc")
            await client.transport_stream.aclose()
            assert await read_exactly(server, 3) == b"abc"
            with pytest.raises(trio.BrokenResourceError):
                await server.receive_some()
            with pytest.raises(trio.BrokenResourceError):
                await server.receive_some()


async def test_receive_some_honours_max_bytes() -> None:
    payload = random_bytes(300_000, 3)
    async with websocket_pair(memory_transports) as (client, server):
        await server.send_all(payload)
        got = bytearray()
        while len(got) < len(payload):
            chunk = await client.receive_some(1000)
            assert 0 < len(chunk) <= 1000
            got += chunk
        assert got == payload


async def test_each_send_all_is_binary_messages_of_bounded_size() -> None:
    peer_transport, server_transport = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_and_send, server_transport, random_bytes(600_000, 4))
        peer = WSConnection(ConnectionType.CLIENT)
        await peer_transport.send_all(peer.send(Request(host="localhost", target="/")))
        messages: list[bytes] = []
        current = bytearray()
        while sum(map(len, messages)) < 600_000:
            for event in await wsproto_events(peer, peer_transport):
                if isinstance(event, BytesMessage):
                    current += event.data
                    if event.message_finished:
                        messages.append(bytes(current))
                        current.clear()
        assert [len(message) for message in messages] == [262144, 262144, 75712]
        assert b"".join(messages) == random_bytes(600_000, 4)


async def accept_and_send(transport: trio.abc.Stream, payload: bytes) -> None:
    stream = await accept_websocket(transport)
    await stream.send_all(payload)


async def wsproto_events(ws: WSConnection, transport: trio.abc.Stream) -> list[Event]:
    data = await transport.receive_some()
    ws.receive_data(data or None)
    return list(ws.events())


# --- against an independent implementation (wsproto) --------------------------------------


async def wsproto_client(transport: trio.abc.Stream) -> WSConnection:
    ws = WSConnection(ConnectionType.CLIENT)
    await transport.send_all(ws.send(Request(host="localhost", target="/")))
    while True:
        for event in await wsproto_events(ws, transport):
            assert isinstance(event, AcceptConnection)
            return ws


async def wsproto_server(transport: trio.abc.Stream) -> WSConnection:
    ws = WSConnection(ConnectionType.SERVER)
    while True:
        for event in await wsproto_events(ws, transport):
            assert isinstance(event, Request)
            await transport.send_all(ws.send(AcceptConnection()))
            return ws


async def test_server_against_wsproto_client() -> None:
    peer_transport, server_transport = trio.testing.memory_stream_pair()
    result: dict[str, WebSocketStream] = {}

    async def serve() -> None:
        result["server"] = await accept_websocket(server_transport)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        peer = await wsproto_client(peer_transport)
    server = result["server"]
    big = random_bytes(200_003, 5)  # not a multiple of 4: masking phase must carry over
    outgoing = peer.send(BytesMessage(data=b"frag", message_finished=False))
    outgoing += peer.send(Ping(payload=b"are you there"))  # between fragments: allowed
    outgoing += peer.send(BytesMessage(data=b"mented", message_finished=True))
    outgoing += peer.send(BytesMessage(data=big))
    outgoing += peer.send(BytesMessage(data=b""))
    # Arbitrary transport chunking must not matter.
    rng = random.Random(6)
    position = 0
    while position < len(outgoing):
        step = rng.randint(1, 9000)
        await peer_transport.send_all(outgoing[position : position + step])
        position += step
    assert await read_exactly(server, 10 + len(big)) == b"fragmented" + big
    events = await wsproto_events(peer, peer_transport)
    assert events == [Pong(payload=b"are you there")]

    await server.send_all(b"reply")
    events = await wsproto_events(peer, peer_transport)
    assert events == [BytesMessage(data=b"reply", frame_finished=True, message_finished=True)]

    await peer_transport.send_all(peer.send(CloseConnection(code=1001, reason="bye")))
    assert await server.receive_some() == b""
    assert (server.close_code, server.close_reason) == (1001, "bye")
    events = await wsproto_events(peer, peer_transport)
    assert events == [CloseConnection(code=1001, reason="")]  # our answering Close
    await server.aclose()


async def test_client_against_wsproto_server() -> None:
    client_transport, peer_transport = trio.testing.memory_stream_pair()
    result: dict[str, WSConnection] = {}

    async def serve() -> None:
        result["peer"] = await wsproto_server(peer_transport)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        client = await connect_websocket(client_transport, host="localhost")
    peer = result["peer"]
    big = random_bytes(100_001, 7)
    await client.send_all(big)
    got = bytearray()
    while len(got) < len(big):
        for event in await wsproto_events(peer, peer_transport):
            assert isinstance(event, BytesMessage)
            got += event.data
    assert got == big  # wsproto unmasked what we masked

    await peer_transport.send_all(
        peer.send(Ping(payload=b"p")) + peer.send(BytesMessage(data=b"down"))
    )
    assert await read_exactly(client, 4) == b"down"
    await client.aclose()
    events = await wsproto_events(peer, peer_transport)
    assert events[0] == Pong(payload=b"p")
    assert isinstance(events[1], CloseConnection)
    assert events[1].code == 1000


async def test_pongs_wait_for_a_blocked_send_and_only_the_latest_is_kept() -> None:
    # Over lockstep streams a send blocks until the peer reads. Pings that arrive
    # meanwhile must neither deadlock the receiver, nor cut into the outgoing message, nor
    # pile up: only the latest is answered (RFC 6455 5.5.3 allows that).
    peer_transport, server_transport = trio.testing.lockstep_stream_pair()
    result: dict[str, WebSocketStream] = {}

    async def serve() -> None:
        result["server"] = await accept_websocket(server_transport)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        peer = await wsproto_client(peer_transport)
    server = result["server"]
    payload = random_bytes(100_000, 8)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.send_all, payload)
            nursery.start_soon(read_to_eof, server)
            await trio.testing.wait_all_tasks_blocked()
            for n in range(50):
                await peer_transport.send_all(peer.send(Ping(payload=b"ping%d" % n)))
            await trio.testing.wait_all_tasks_blocked()
            seen: list[Event] = []
            got = bytearray()
            while not any(isinstance(event, Pong) for event in seen):
                for event in await wsproto_events(peer, peer_transport):
                    seen.append(event)
                    if isinstance(event, BytesMessage):
                        got += event.data
            assert got == payload
            assert seen[-1] == Pong(payload=b"ping49")
            assert sum(isinstance(event, Pong) for event in seen) == 1
            nursery.cancel_scope.cancel()
    await trio.aclose_forcefully(server)


# --- cancellation ---------------------------------------------------------------------------


async def test_send_cancelled_before_writing_leaves_stream_usable() -> None:
    async with websocket_pair(memory_transports) as (client, server):
        with trio.CancelScope() as scope:
            scope.cancel()
            await client.send_all(b"never")
        await client.send_all(b"fine")
        assert await read_exactly(server, 4) == b"fine"


async def test_send_cancelled_mid_frame_breaks_the_stream() -> None:
    async with websocket_pair(lockstep_transports) as (client, server):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def cancel_when_blocked() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()

                nursery.start_soon(cancel_when_blocked)
                await client.send_all(b"x" * 10_000)
        with pytest.raises(trio.BrokenResourceError):
            await client.send_all(b"more")

        async def expect_no_close_frame() -> None:
            # Whatever of the torn send got through may arrive, but then TCP just ends: a
            # Close frame would have read as a clean EOF.
            with pytest.raises(trio.BrokenResourceError):
                await read_to_eof(server)

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(expect_no_close_frame)
                await trio.testing.wait_all_tasks_blocked()
                await client.aclose()


# --- protocol violations --------------------------------------------------------------------


async def test_text_message_is_a_protocol_error(transports: TransportMaker) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket_pair(transports) as (client, server):
            text_frame = FrameProtocol(client=True, extensions=[]).send_data("hello")
            await client.transport_stream.send_all(bytes(text_frame))
            with pytest.raises(RemoteProtocolError, match="text") as caught:
                await server.receive_some()
            assert caught.value.code == 1003
            with pytest.raises(trio.BrokenResourceError):
                await server.receive_some()
            with pytest.raises(trio.BrokenResourceError):
                await server.send_all(b"x")
            await server.aclose()  # fails the connection with our Close(1003)
            assert await client.receive_some() == b""
            assert client.close_code == 1003


async def test_garbage_after_handshake_is_a_protocol_error(transports: TransportMaker) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket_pair(transports) as (client, server):
            await client.transport_stream.send_all(b"\xff\xfe garbage, not frames")
            with pytest.raises(RemoteProtocolError):
                await server.receive_some()


async def test_data_before_a_bad_frame_is_delivered_first() -> None:
    async with websocket_pair(memory_transports) as (client, server):
        await client.transport_stream.send_all(raw_frame(0x2, b"good") + b"\x0f\x00")
        assert await server.receive_some() == b"good"
        with pytest.raises(RemoteProtocolError):
            await server.receive_some()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        pytest.param(raw_frame(0x2, b"x", mask=None), "unmasked", id="unmasked-client-frame"),
        pytest.param(raw_frame(0x2, b"x", rsv=0x40), "reserved", id="rsv-bit"),
        pytest.param(raw_frame(0x3, b"x"), "opcode", id="reserved-data-opcode"),
        pytest.param(raw_frame(0xB, b"x"), "opcode", id="reserved-control-opcode"),
        pytest.param(raw_frame(0x0, b"x"), "continuation", id="stray-continuation"),
        pytest.param(
            raw_frame(0x2, b"a", fin=False) + raw_frame(0x2, b"b"),
            "previous",
            id="new-message-mid-message",
        ),
        pytest.param(raw_frame(0x9, b"x", fin=False), "fragmented control", id="fragmented-ping"),
        pytest.param(raw_frame(0x9, b"x" * 126), "125", id="long-ping"),
        pytest.param(raw_frame(0x2, b"x" * 10, length_bytes=2), "minimally", id="long-16bit-len"),
        pytest.param(raw_frame(0x2, b"x" * 200, length_bytes=8), "minimally", id="long-64bit-len"),
        pytest.param(
            bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big"), "minimally", id="64bit-len-msb"
        ),
        pytest.param(raw_frame(0x8, b"\x03"), "1-byte", id="close-1-byte"),
        pytest.param(raw_frame(0x8, (1005).to_bytes(2, "big")), "status code", id="close-1005"),
        pytest.param(raw_frame(0x8, (999).to_bytes(2, "big")), "status code", id="close-999"),
        pytest.param(
            raw_frame(0x8, (1000).to_bytes(2, "big") + b"\xff"), "UTF-8", id="close-bad-utf8"
        ),
    ],
)
async def test_frame_rule_violations_from_the_client(frame: bytes, reason: str) -> None:
    async with websocket_pair(memory_transports) as (client, server):
        await client.transport_stream.send_all(frame)
        with pytest.raises(RemoteProtocolError, match=reason):
            await read_to_eof(server)


async def test_masked_frame_from_the_server_is_a_protocol_error() -> None:
    async with websocket_pair(memory_transports) as (client, server):
        await server.transport_stream.send_all(raw_frame(0x2, b"x"))
        with pytest.raises(RemoteProtocolError, match="masked"):
            await client.receive_some()


async def test_oversized_message_is_refused_with_1009() -> None:
    async with websocket_pair(memory_transports, max_message_size=1000) as (client, server):
        # 600 + 600 bytes: each fragment fits, the message does not.
        await client.transport_stream.send_all(
            raw_frame(0x2, b"a" * 600, fin=False) + raw_frame(0x0, b"b" * 600)
        )
        with pytest.raises(RemoteProtocolError, match="larger") as caught:
            await read_to_eof(server)
        assert caught.value.code == 1009
        await server.aclose()
        assert await client.receive_some() == b""
        assert client.close_code == 1009


async def test_default_message_limit_accepts_a_full_size_message() -> None:
    payload = random_bytes(MAX_MESSAGE_SIZE, 9)
    async with websocket_pair(memory_transports) as (client, server):
        frame = FrameProtocol(client=True, extensions=[]).send_data(payload)
        await client.transport_stream.send_all(bytes(frame))
        assert await read_exactly(server, len(payload)) == payload


# --- the HTTP upgrade ------------------------------------------------------------------------


async def refused_response(transports: TransportMaker, request: bytes) -> tuple[bytes, str]:
    raw, server_transport = await transports()
    try:
        with trio.fail_after(TIMEOUT):
            await raw.send_all(request)
            with pytest.raises(TransportError) as caught:
                await accept_websocket(server_transport)
            return await read_http_head(raw), str(caught.value)
    finally:
        await trio.aclose_forcefully(raw)
        await trio.aclose_forcefully(server_transport)


async def test_plain_http_request_gets_400(transports: TransportMaker) -> None:
    response, _ = await refused_response(
        transports, b"GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
    )
    assert response.startswith(b"HTTP/1.1 400 ")


async def test_oversized_handshake_is_refused(transports: TransportMaker) -> None:
    padding = b"".join(b"X-Padding-%d: %s\r\n" % (n, b"a" * 100) for n in range(200))
    request = b"GET / HTTP/1.1\r\nHost: example.com\r\n" + padding + b"\r\n"
    assert len(request) > MAX_HANDSHAKE_BYTES
    response, message = await refused_response(transports, request)
    assert response.startswith(b"HTTP/1.1 431 ")
    assert "larger than" in message


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", b"400"),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            b"426",
        ),
        (b"\x16\x03\x01 this is a TLS hello, not HTTP\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n", b"400"),
    ],
)
async def test_bad_upgrade_requests_are_refused(request_bytes: bytes, status: bytes) -> None:
    response, _ = await refused_response(memory_transports, request_bytes)
    assert response.startswith(b"HTTP/1.1 " + status + b" ")


async def test_connection_closed_during_handshake() -> None:
    raw, server_transport = trio.testing.memory_stream_pair()
    await raw.send_all(b"GET / HTTP/1.1\r\n")
    await raw.aclose()
    with pytest.raises(TransportError, match="closed"):
        await accept_websocket(server_transport)


async def test_any_path_and_extra_headers_are_accepted() -> None:
    client_transport, peer_transport = trio.testing.memory_stream_pair()
    seen: list[Request] = []

    async def serve() -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while not seen:
            for event in await wsproto_events(ws, peer_transport):
                assert isinstance(event, Request)
                seen.append(event)
        await peer_transport.send_all(ws.send(AcceptConnection()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await connect_websocket(
            client_transport,
            host="[::1]:4001",
            path="/some/path?q=1",
            extra_headers=[("User-Agent", "neonet"), (b"X-Test", b"1")],
        )
    assert seen[0].target == "/some/path?q=1"
    assert seen[0].host == "[::1]:4001"
    assert (b"user-agent", b"neonet") in seen[0].extra_headers

    server_side, client_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_websocket, server_side)
        await connect_websocket(client_side, host="h", path="/anything/at/all")


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "HTTP 400"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", "HTTP 200"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n",
            "bad WebSocket handshake response",
        ),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "bad WebSocket handshake response"),
        (b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Big: " + b"b" * 20000, "larger than"),
        (b"HTTP/1.1 101 Switching", "closed during"),
    ],
)
async def test_client_refuses_bad_responses(response: bytes, match: str) -> None:
    client_transport, peer_transport = trio.testing.memory_stream_pair()

    async def answer() -> None:
        await peer_transport.receive_some()
        await peer_transport.send_all(response)
        await peer_transport.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        with pytest.raises(TransportError, match=match):
            await connect_websocket(client_transport, host="h")


async def test_client_may_pipeline_its_first_message_behind_the_upgrade() -> None:
    peer_transport, server_transport = trio.testing.memory_stream_pair()
    peer = WSConnection(ConnectionType.CLIENT)
    frames = FrameProtocol(client=True, extensions=[])
    request = peer.send(Request(host="localhost", target="/"))
    pipelined = bytes(frames.send_data(b"/multistream/1.0.0\n")) + raw_frame(0x9, b"hi")
    # Request and first frames in a single write: the server reads them in one chunk.
    await peer_transport.send_all(request + pipelined)
    server = await accept_websocket(server_transport)
    assert await read_exactly(server, 19) == b"/multistream/1.0.0\n"
    response = await read_http_head(peer_transport)
    peer.receive_data(response)
    events = list(peer.events())
    assert isinstance(events[0], AcceptConnection)
    assert events[1:] == [Pong(payload=b"hi")]  # the pipelined ping was seen too


async def test_server_may_pipeline_data_behind_the_101() -> None:
    client_transport, peer_transport = trio.testing.memory_stream_pair()

    async def serve() -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            events = await wsproto_events(ws, peer_transport)
            if events:
                break
        accept = ws.send(AcceptConnection())
        await peer_transport.send_all(accept + raw_frame(0x2, b"early", mask=None))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        client = await connect_websocket(client_transport, host="h")
    assert await client.receive_some() == b"early"


# --- property tests -------------------------------------------------------------------------

FUZZ = settings(
    max_examples=200,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


async def feed_server(chunks: list[bytes]) -> tuple[bytes, BaseException | None]:
    """Send ``chunks`` raw to a WebSocket server after a valid handshake, then drop TCP;
    return what the server read and how reading ended (None: a clean EOF)."""
    client, server = await make_pair(memory_transports)
    got = bytearray()
    ending: BaseException | None = None
    with trio.fail_after(TIMEOUT):  # a hang is a failure
        for chunk in chunks:
            await client.transport_stream.send_all(chunk)
        await client.transport_stream.aclose()
        try:
            while chunk := await server.receive_some():
                got += chunk
        except (RemoteProtocolError, trio.BrokenResourceError) as exc:
            ending = exc
        await server.aclose()
    return bytes(got), ending


@FUZZ
@given(st.lists(st.binary(max_size=300), max_size=8))
async def test_random_bytes_after_handshake_fail_cleanly(chunks: list[bytes]) -> None:
    await feed_server(chunks)


OPCODES = st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x7, 0x8, 0x9, 0xA, 0xB, 0xF])
MASKS = st.binary(min_size=4, max_size=4)


@st.composite
def frame_sequences(draw: st.DrawFn) -> tuple[list[bytes], bool, bool, bytes]:
    """Valid frames (binary messages, fragmented or not, pings, pongs) mixed with
    arbitrary ones that are mostly nearly valid, then cut anywhere.

    Returns the wire chunks, whether every frame was valid, whether a valid Close ends
    them, and the payload the valid messages carry.
    """
    frames: list[bytes] = []
    all_valid = True
    payload = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["binary", "fragmented", "control", "arbitrary"]))
        if kind == "binary":
            data = draw(st.binary(max_size=2000))
            frames.append(raw_frame(0x2, data, mask=draw(MASKS)))
            payload += data
        elif kind == "fragmented":
            parts = draw(st.lists(st.binary(max_size=300), min_size=2, max_size=4))
            for index, part in enumerate(parts):
                opcode = 0x2 if index == 0 else 0x0
                last = index == len(parts) - 1
                frames.append(raw_frame(opcode, part, fin=last, mask=draw(MASKS)))
                if not last and draw(st.booleans()):  # control frames may interleave
                    frames.append(raw_frame(0x9, draw(st.binary(max_size=125)), mask=draw(MASKS)))
                payload += part
        elif kind == "control":
            opcode = draw(st.sampled_from([0x9, 0xA]))
            frames.append(raw_frame(opcode, draw(st.binary(max_size=125)), mask=draw(MASKS)))
        else:
            frames.append(
                raw_frame(
                    draw(OPCODES),
                    draw(st.binary(max_size=draw(st.sampled_from([10, 125, 130, 300])))),
                    fin=draw(st.sampled_from([True, True, True, False])),
                    rsv=draw(st.sampled_from([0, 0, 0, 0, 0, 0x10, 0x20, 0x40])),
                    mask=draw(st.sampled_from([b"\x00\x00\x00\x00", b"\x9a\x01\xff\x10", None])),
                )
            )
            all_valid = False
    closed = draw(st.booleans())
    if closed:
        code = draw(st.sampled_from([b"", b"\x03\xe8", b"\x03\xe9reason", b"\x0f\xa0"]))
        frames.append(raw_frame(0x8, code, mask=draw(MASKS)))
    junk = draw(st.binary(max_size=20))
    wire = b"".join(frames) + junk
    cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    # Anything after a Close frame is ignored, so junk only matters without one.
    return chunks, all_valid and (closed or not junk), closed, bytes(payload)


@FUZZ
@given(frame_sequences())
async def test_random_frames_fail_cleanly_or_deliver_exactly(
    case: tuple[list[bytes], bool, bool, bytes],
) -> None:
    chunks, valid, closed, payload = case
    got, ending = await feed_server(chunks)
    if valid:
        assert got == payload
        if closed:
            assert ending is None
        else:  # the connection was dropped without a Close frame
            assert isinstance(ending, trio.BrokenResourceError)


@FUZZ
@given(
    st.lists(st.binary(min_size=1, max_size=5000), max_size=6),
    st.lists(st.integers(1, 4000), min_size=1, max_size=10),
)
async def test_valid_messages_in_any_chunking_deliver_exactly(
    messages: list[bytes], cuts: list[int]
) -> None:
    frames = FrameProtocol(client=True, extensions=[])
    wire = b"".join(bytes(frames.send_data(message)) for message in messages)
    wire += bytes(frames.close(1000))
    chunks = []
    position = 0
    while position < len(wire):
        step = cuts[len(chunks) % len(cuts)]
        chunks.append(wire[position : position + step])
        position += step
    got, ending = await feed_server(chunks)
    assert got == b"".join(messages)
    assert ending is None


@FUZZ
@given(st.binary(max_size=600), st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"GET "]))
async def test_random_handshake_bytes_only_raise_transport_error(
    junk: bytes, prefix: bytes
) -> None:
    raw, server_transport = trio.testing.memory_stream_pair()
    await raw.send_all(prefix + junk)
    await raw.aclose()
    with trio.fail_after(TIMEOUT):
        try:
            stream = await accept_websocket(server_transport)
        except TransportError:
            return
    await stream.aclose()
