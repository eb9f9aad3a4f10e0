"""Circuit relay v2 between NeoNet nodes on loopback: reservations, circuits, limits.

(Interop with go-/rust-libp2p relays is in tests/interop/test_relay_interop.py.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

from neonet.core.errors import TransportError
from neonet.core.multiaddr import Multiaddr
from neonet.net.relayed import RelayRefusedError
from neonet.node import Node, open_node
from neonet.proto.relay import (
    HOP_PROTOCOL_ID,
    STOP_PROTOCOL_ID,
    FrameReader,
    Limit,
    RelayLimits,
    Status,
    decode_hop,
    decode_stop,
)
from neonet.services.relay import (
    RelayClient,
    RelayService,
    open_relay,
    open_relay_client,
    reserve,
)
from tests.streams import echo, read_all

ECHO = "/echo/1.0.0"
TIMEOUT = 20


@asynccontextmanager
async def relay_setup(
    limits: RelayLimits | None = None,
) -> AsyncIterator[tuple[Node, RelayService, Node, RelayClient, Node, RelayClient]]:
    """A relay R; A reserved on R (echo handler); B with a relay client (dial only)."""
    async with AsyncExitStack() as stack:
        relay_node = await stack.enter_async_context(open_node())
        service = await stack.enter_async_context(open_relay(relay_node, limits))
        a = await stack.enter_async_context(open_node())
        a.set_stream_handler(ECHO, echo)
        a_client = await stack.enter_async_context(
            open_relay_client(a, [relay_node.listen_addrs[0]])
        )
        with trio.fail_after(TIMEOUT):
            await a_client.wait_reserved()
        b = await stack.enter_async_context(open_node())
        b_client = await stack.enter_async_context(open_relay_client(b))
        yield relay_node, service, a, a_client, b, b_client


async def wait_disconnected(node: Node, other: Node) -> None:
    """Wait until ``node`` has no connection to ``other`` left."""
    while node.host.swarm.connections_to(other.peer_id):
        gone = trio.Event()
        node.host.swarm.on_disconnect.append(lambda connection, gone=gone: gone.set())
        await gone.wait()


def circuit_to(relay: Node, target: Node) -> Multiaddr:
    return relay.listen_addrs[0].encapsulate("/p2p-circuit").with_peer_id(target.peer_id)


async def test_reserve_and_dial_through_relay() -> None:
    async with relay_setup() as (relay_node, service, a, a_client, b, _):
        info = a_client.reservations[relay_node.peer_id]
        assert info.voucher is not None
        assert info.voucher.relay == relay_node.peer_id and info.voucher.peer == a.peer_id
        assert info.limit == service.limits.circuit
        # The reserved circuit address is advertised among A's addresses.
        advertised = [str(x) for x in a.listen_addrs]
        assert any("/p2p-circuit/p2p/" + str(a.peer_id) in x for x in advertised)
        with trio.fail_after(TIMEOUT):
            assert await b.connect(circuit_to(relay_node, a)) == a.peer_id
            connection = b.host.swarm.connections_to(a.peer_id)[0]
            assert connection.relayed
            stream = await b.new_stream(a.peer_id, [ECHO])
            payload = bytes(range(256)) * 256
            async with trio.open_nursery() as nursery:

                async def send() -> None:
                    await stream.send_all(payload)
                    await stream.send_eof()

                nursery.start_soon(send)
                assert await read_all(stream) == payload
            rtts = await b.ping(a.peer_id, count=3)
            assert len(rtts) == 3
            # A sees the relayed connection as inbound and identified B through it.
            info_b = await a.identify_service.wait_identified(b.peer_id)
            assert info_b.agent_version
        assert service.statistics.circuits_opened == 1
        assert service.statistics.bytes_relayed >= 2 * len(payload)


async def test_dial_without_reservation_is_refused() -> None:
    async with AsyncExitStack() as stack:
        relay_node = await stack.enter_async_context(open_node())
        service = await stack.enter_async_context(open_relay(relay_node))
        target = await stack.enter_async_context(open_node())
        await target.connect(relay_node.listen_addrs[0])  # connected, but no reservation
        b = await stack.enter_async_context(open_node())
        await stack.enter_async_context(open_relay_client(b))
        with trio.fail_after(TIMEOUT), pytest.raises(TransportError, match="NO_RESERVATION"):
            await b.connect(circuit_to(relay_node, target))
        assert service.statistics.circuits_refused == 1


async def test_reservation_limit_per_ip_refuses_with_status() -> None:
    limits = RelayLimits(max_reservations_per_ip=1)
    async with relay_setup(limits) as (relay_node, service, _, _, b, _):
        with trio.fail_after(TIMEOUT), pytest.raises(RelayRefusedError) as caught:
            await reserve(b.host, relay_node.listen_addrs[0])
        assert caught.value.status == Status.RESERVATION_REFUSED
        assert service.statistics.reservations_refused == 1


async def test_data_limit_resets_the_circuit() -> None:
    limits = RelayLimits(circuit=Limit(duration=60, data=64 * 1024))
    async with relay_setup(limits) as (relay_node, service, a, _, b, _):
        with trio.fail_after(TIMEOUT):
            await b.connect(circuit_to(relay_node, a))
            stream = await b.new_stream(a.peer_id, [ECHO])
            with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
                for _ in range(64):
                    await stream.send_all(b"x" * 16384)
                    await stream.receive_some()
            # The relayed connection is gone on both ends.
            await wait_disconnected(b, a)
        assert service.statistics.circuits_limited == 1


async def test_duration_limit_ends_the_circuit() -> None:
    limits = RelayLimits(circuit=Limit(duration=1, data=0))
    async with relay_setup(limits) as (relay_node, service, a, _, b, _):
        with trio.fail_after(TIMEOUT):
            await b.connect(circuit_to(relay_node, a))
            start = trio.current_time()
            await wait_disconnected(b, a)
            assert trio.current_time() - start < 5
        assert service.statistics.circuits_limited == 1


async def test_circuit_limit_per_peer() -> None:
    limits = RelayLimits(max_circuits_per_peer=1)
    async with relay_setup(limits) as (relay_node, _, a, _, b, _):
        with trio.fail_after(TIMEOUT):
            await b.connect(circuit_to(relay_node, a))
            # A second circuit to A (from another peer) exceeds A's per-peer circuit limit.
            async with open_node() as c, open_relay_client(c):
                with pytest.raises(RelayRefusedError) as caught:
                    await c.connect(circuit_to(relay_node, a))
        assert caught.value.status == Status.RESOURCE_LIMIT_EXCEEDED


async def test_no_reservation_over_a_relayed_connection() -> None:
    async with relay_setup() as (relay_node, _, a, _, b, _):
        # B reaches A only through the relay; A runs no relay, but even a relay must
        # refuse hop requests that arrive over a relayed connection.
        async with open_relay(a) as a_service:
            with trio.fail_after(TIMEOUT):
                await b.connect(circuit_to(relay_node, a))
                with pytest.raises(RelayRefusedError) as caught:
                    await reserve(b.host, Multiaddr.from_string(f"/p2p/{a.peer_id}"))
            assert caught.value.status == Status.PERMISSION_DENIED
            assert a_service.statistics.reservations_accepted == 0


async def test_reservation_is_refreshed_after_the_relay_drops_us() -> None:
    limits = RelayLimits(reservation_ttl=3600)
    async with relay_setup(limits) as (relay_node, service, a, a_client, _, _):
        with trio.fail_after(TIMEOUT):
            first = a_client.reservations[relay_node.peer_id]
            await relay_node.host.disconnect(a.peer_id)
            while service.resources.reservation_count(trio.current_time()) == 0 or (
                a_client.reservations.get(relay_node.peer_id) is first
            ):
                await a_client.wait_changed()
        assert service.statistics.reservations_accepted >= 2


async def test_reservation_is_refreshed_before_it_expires() -> None:
    # A 2 s reservation: the client renews it after half its remaining time.
    limits = RelayLimits(reservation_ttl=2)
    async with relay_setup(limits) as (relay_node, service, _, a_client, _, _):
        first = a_client.reservations[relay_node.peer_id]
        with trio.fail_after(TIMEOUT):
            while a_client.reservations.get(relay_node.peer_id, first).expire <= first.expire:
                await a_client.wait_changed()
        assert service.statistics.reservations_accepted >= 2
        assert service.resources.reservation_count(trio.current_time()) == 1


async def test_malformed_hop_and_stop_messages_get_a_status() -> None:
    async with relay_setup() as (relay_node, service, a, _, b, _):
        with trio.fail_after(TIMEOUT):
            await b.connect(relay_node.listen_addrs[0])
            for garbage, protocol, peer in (
                (b"\x03\xff\xff\xff", HOP_PROTOCOL_ID, relay_node.peer_id),
                (b"\x02\x08\x07", HOP_PROTOCOL_ID, relay_node.peer_id),
                (b"\x01\x08", STOP_PROTOCOL_ID, a.peer_id),
            ):
                if peer == a.peer_id:
                    await b.connect(a.listen_addrs[0])
                stream = await b.new_stream(peer, [protocol])
                await stream.send_all(garbage)
                reply = FrameReader()
                reply.receive_data(await read_all(stream))
                body = reply.next_frame()
                assert body is not None
                decode = decode_hop if protocol == HOP_PROTOCOL_ID else decode_stop
                assert decode(body).status == Status.MALFORMED_MESSAGE
            # Both nodes still serve: a circuit works afterwards.
            await b.host.disconnect(a.peer_id)
            await b.connect(circuit_to(relay_node, a))
            assert len(await b.ping(a.peer_id)) == 1
        assert service.statistics.circuits_opened == 1
