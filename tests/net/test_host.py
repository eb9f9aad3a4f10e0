"""Two NeoNet nodes over real loopback sockets: the whole stack end to end.

(Interop with other libp2p implementations is tests/interop; these check NeoNet's own
behaviour: limits, errors, stream semantics.)
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from neonet.core.errors import (
    LimitExceededError,
    NegotiationError,
    PeerIdMismatchError,
    TransportError,
)
from neonet.core.keys import Ed25519Identity
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.net.swarm import SwarmConfig
from neonet.node import Node, Stream, open_node
from tests.conftest import has_ipv6_loopback
from tests.streams import echo, read_all

ECHO = "/echo/1.0.0"
TIMEOUT = 20


@asynccontextmanager
async def two_nodes(
    listen: str = "/ip4/127.0.0.1/tcp/0", **config: int
) -> AsyncIterator[tuple[Node, Node]]:
    swarm_config = SwarmConfig(**config) if config else None  # type: ignore[arg-type]
    async with (
        open_node(listen=[listen], config=swarm_config) as server,
        open_node(listen=()) as client,
    ):
        server.set_stream_handler(ECHO, echo)
        yield server, client


@pytest.mark.parametrize(
    "listen",
    [
        "/ip4/127.0.0.1/tcp/0",
        "/ip4/127.0.0.1/tcp/0/ws",
        pytest.param(
            "/ip6/::1/tcp/0",
            marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1 here"),
        ),
        pytest.param(
            "/ip6/::1/tcp/0/ws",
            marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1 here"),
        ),
    ],
)
async def test_connect_ping_identify_echo(listen: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with two_nodes(listen) as (server, client):
            address = server.listen_addrs[0]
            assert str(address).startswith(listen.split("/tcp/")[0])
            peer = await client.connect(address)
            assert peer == server.peer_id
            times = await client.ping(peer, count=3)
            assert len(times) == 3 and all(t > 0 for t in times)
            info = await client.identify(peer)
            assert info.agent_version and info.agent_version.startswith("neonet/")
            assert ECHO in info.protocols and "/ipfs/ping/1.0.0" in info.protocols
            assert info.observed_addr is not None
            assert Multiaddr.from_bytes(info.observed_addr).value_for("tcp") is not None
            payload = os.urandom(1024 * 1024)
            stream = await client.new_stream(peer, [ECHO])
            assert stream.protocol == ECHO
            async with trio.open_nursery() as nursery:
                received: list[bytes] = []

                async def reader() -> None:
                    received.append(await read_all(stream))

                nursery.start_soon(reader)
                await stream.send_all(payload)
                await stream.send_eof()
            assert received[0] == payload


async def test_server_learns_client_through_identify() -> None:
    with trio.fail_after(TIMEOUT):
        async with two_nodes() as (server, client):
            await client.connect(server.listen_addrs[0])
            info = await server.identify_service.wait_identified(client.peer_id)
            assert info.agent_version is not None
            assert await client.identify_service.wait_identified(server.peer_id)


async def test_connection_identify_and_disconnect_callbacks_fire() -> None:
    """Services (DHT, pubsub) learn of peers through these hooks."""
    with trio.fail_after(TIMEOUT):
        async with two_nodes() as (server, client):
            connected = trio.Event()
            identified = trio.Event()
            gone = trio.Event()
            server.host.swarm.on_connection.append(lambda c: connected.set())
            server.host.swarm.on_disconnect.append(
                lambda c: gone.set() if c.remote_peer == client.peer_id else None
            )
            server.identify_service.on_identified.append(
                lambda peer, info: identified.set() if peer == client.peer_id else None
            )
            await client.connect(server.listen_addrs[0])
            await connected.wait()
            await identified.wait()
            assert not gone.is_set()
            await client.host.disconnect(server.peer_id)
            await gone.wait()
            assert client.peer_id not in server.connected_peers()


async def test_identify_push_announces_new_protocols() -> None:
    with trio.fail_after(TIMEOUT):
        async with two_nodes() as (server, client):
            await client.connect(server.listen_addrs[0])
            await client.identify_service.wait_identified(server.peer_id)
            await server.identify_service.wait_identified(client.peer_id)
            assert "/chat/1.0.0" not in client.host.peerstore.protocols(server.peer_id)
            async with trio.open_nursery() as nursery:

                async def wait_for_push() -> None:
                    record = await client.identify_service.wait_for_record(server.peer_id)
                    assert "/chat/1.0.0" in record.protocols

                nursery.start_soon(wait_for_push)
                await trio.testing.wait_all_tasks_blocked()
                server.set_stream_handler("/chat/1.0.0", echo)
            assert "/chat/1.0.0" in client.host.peerstore.protocols(server.peer_id)


async def test_dialing_the_wrong_peer_id_fails_clearly() -> None:
    with trio.fail_after(TIMEOUT):
        async with two_nodes() as (server, client):
            impostor = PeerId.from_public_key(Ed25519Identity.generate().public_key)
            wrong = server.listen_addrs[0].with_peer_id(impostor)
            with pytest.raises(PeerIdMismatchError) as caught:
                await client.connect(wrong)
            assert str(impostor) in str(caught.value) and str(server.peer_id) in str(caught.value)
            assert await client.connect(server.listen_addrs[0]) == server.peer_id


async def test_unknown_protocol_is_refused_and_connection_survives() -> None:
    with trio.fail_after(TIMEOUT):
        async with two_nodes() as (server, client):
            peer = await client.connect(server.listen_addrs[0])
            with pytest.raises(NegotiationError):
                await client.new_stream(peer, ["/nope/1.0.0", "/nope/2.0.0"])
            assert len(await client.ping(peer)) == 1


async def test_concurrent_dials_to_one_peer_share_one_connection() -> None:
    with trio.fail_after(TIMEOUT):
        async with two_nodes() as (server, client):
            results: list[PeerId] = []

            async def dial() -> None:
                results.append(await client.connect(server.listen_addrs[0]))

            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(dial)
            assert results == [server.peer_id] * 5
            assert len(client.host.swarm.connections_to(server.peer_id)) == 1


async def test_garbage_and_plaintext_are_refused_and_the_node_keeps_serving() -> None:
    with trio.fail_after(TIMEOUT):
        async with two_nodes() as (server, client):
            address = server.listen_addrs[0]
            port = int(address.value_for("tcp") or 0)
            for attack in (
                os.urandom(300),
                b"\x13/multistream/1.0.0\n\x11/plaintext/2.0.0\n",
                b"\x13/multistream/1.0.0\n\x07/noise\n" + b"\x00\x20" + os.urandom(32),
                b"\xff" * 64,
            ):
                raw = await trio.open_tcp_stream("127.0.0.1", port)
                await raw.send_all(attack)
                await raw.send_eof()
                # The node answers or hangs up; it never keeps a bad connection as a peer.
                with trio.fail_after(10):
                    try:
                        while await raw.receive_some():
                            pass
                    except trio.BrokenResourceError:
                        pass  # a reset is a fine way to hang up
                await raw.aclose()
            assert server.connected_peers() == []
            assert await client.connect(address) == server.peer_id
            assert len(await client.ping(server.peer_id)) == 1


async def test_connection_limit_refuses_extra_inbound() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_node(config=SwarmConfig(max_connections=1)) as server:
            async with open_node(listen=()) as first, open_node(listen=()) as second:
                await first.connect(server.listen_addrs[0])
                with pytest.raises((TransportError, trio.BrokenResourceError, OSError)):
                    await second.connect(server.listen_addrs[0])
                    await second.ping(server.peer_id)
                assert len(await first.ping(server.peer_id)) == 1


async def test_outbound_connection_limit() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_node() as one, open_node() as two:
            async with open_node(listen=(), config=SwarmConfig(max_connections=1)) as client:
                await client.connect(one.listen_addrs[0])
                with pytest.raises(LimitExceededError):
                    await client.connect(two.listen_addrs[0])


async def test_handler_crash_resets_only_that_stream() -> None:
    async def broken(stream: Stream) -> None:
        raise RuntimeError("handler bug")

    with trio.fail_after(TIMEOUT):
        async with two_nodes() as (server, client):
            server.set_stream_handler("/broken/1.0.0", broken)
            peer = await client.connect(server.listen_addrs[0])
            stream = await client.new_stream(peer, ["/broken/1.0.0"])
            with pytest.raises(trio.BrokenResourceError):
                await stream.send_all(b"x")
                await read_all(stream)
            assert len(await client.ping(peer)) == 1


async def test_unreachable_address_is_a_transport_error() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_node(listen=()) as client:
            with socket.socket() as closed:
                closed.bind(("127.0.0.1", 0))
                port = closed.getsockname()[1]
            with pytest.raises(TransportError):
                await client.connect(f"/ip4/127.0.0.1/tcp/{port}")
            with pytest.raises(TransportError, match="wss"):
                await client.connect("/ip4/127.0.0.1/tcp/1/wss")


async def test_streams_pass_trio_half_closeable_conformance() -> None:
    with trio.fail_after(10):
        async with two_nodes() as (server, client):
            peer = await client.connect(server.listen_addrs[0])
            inbound: trio.MemorySendChannel[Stream]
            inbound, accepted = trio.open_memory_channel[Stream](1)
            finished = trio.Event()

            async def keep(stream: Stream) -> None:
                await inbound.send(stream)
                await finished.wait()

            server.set_stream_handler("/conformance/1.0.0", keep)

            async def stream_maker() -> tuple[Stream, Stream]:
                outbound = await client.new_stream(peer, ["/conformance/1.0.0"])
                return outbound, await accepted.receive()

            try:
                await trio.testing.check_half_closeable_stream(stream_maker, None)
            finally:
                finished.set()


async def test_stream_open_proposal_and_first_data_share_one_write() -> None:
    # A stream to a protocol the peer announced: the SYN, the multistream proposal and
    # the first data leave in one transport write (each write is a ~30 us syscall).
    async with two_nodes() as (server, client):
        with trio.fail_after(TIMEOUT):
            peer = await client.connect(server.listen_addrs[0])
            await client.identify_service.wait_identified(peer)
            await server.identify_service.wait_identified(client.peer_id)
            session = client.host.swarm.connections_to(peer)[0].session
            for _ in range(20):
                before = session.statistics().writes
                stream = await client.new_stream(peer, [ECHO])
                await stream.send_all(b"x")
                assert await stream.receive_some(1) == b"x"
                assert session.statistics().writes - before == 1
                await stream.aclose()


async def test_listener_answers_each_stream_in_one_write() -> None:
    # The benchmark's stream pattern (open, 1-byte echo, close, sequential): the
    # listener's ACK, negotiation answer and echo share one write, and its FIN for the
    # previous stream rides along (data a handler sends ends the writer's deferral, but
    # output queued before a read or a consume keeps waiting for it).
    async with two_nodes() as (server, client):
        with trio.fail_after(TIMEOUT):
            peer = await client.connect(server.listen_addrs[0])
            await client.identify_service.wait_identified(peer)
            await server.identify_service.wait_identified(client.peer_id)
            session = server.host.swarm.connections_to(client.peer_id)[0].session
            before = session.statistics().writes
            count = 50
            for _ in range(count):
                stream = await client.new_stream(peer, [ECHO])
                await stream.send_all(b"x")
                assert await stream.receive_some(1) == b"x"
                await stream.aclose()
            # The last stream's FIN may still be on its way: at most one write more.
            assert session.statistics().writes - before <= count + 1


async def test_pipelined_proposal_for_an_unknown_protocol_is_refused_on_first_read() -> None:
    # The dialer believes the peer speaks /nope and sends proposal and data at once:
    # the listener cannot settle it from the buffered bytes, falls back to the full
    # negotiation, answers "na", and the dialer's first read says so.
    async with two_nodes() as (server, client):
        with trio.fail_after(TIMEOUT):
            peer = await client.connect(server.listen_addrs[0])
            stream = await client.host.swarm.new_stream(
                peer, ["/nope/1.0.0"], known_supported="/nope/1.0.0"
            )
            await stream.send_all(b"hello")
            with pytest.raises(NegotiationError):
                await stream.receive_some()
            echo_stream = await client.new_stream(peer, [ECHO])
            await echo_stream.send_all(b"still here")
            await echo_stream.send_eof()
            assert await read_all(echo_stream) == b"still here"
