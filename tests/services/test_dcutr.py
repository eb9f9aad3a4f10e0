"""DCUtR between NeoNet nodes on loopback: a relayed connection becomes a direct one.

(Through real NATs in network namespaces, driven by the SSN client: tests/nat/test_nat.py.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

from neonet.net.swarm import Connection
from neonet.node import Node, open_node
from neonet.proto.dcutr import PROTOCOL_ID
from neonet.services.dcutr import DcutrService, open_dcutr
from neonet.services.relay import open_relay, open_relay_client
from tests.streams import echo

ECHO = "/echo/1.0.0"
TIMEOUT = 20


@asynccontextmanager
async def punching_node(stack: AsyncExitStack) -> AsyncIterator[tuple[Node, DcutrService]]:
    node = await stack.enter_async_context(open_node(listen=()))
    service = await stack.enter_async_context(open_dcutr(node, grace_period=0.2))
    await node.listen("/ip4/127.0.0.1/tcp/0")
    yield node, service


async def test_relayed_connection_is_upgraded_to_direct() -> None:
    async with AsyncExitStack() as stack:
        relay_node = await stack.enter_async_context(open_node())
        await stack.enter_async_context(open_relay(relay_node))
        listener, listener_dcutr = await stack.enter_async_context(punching_node(stack))
        listener.set_stream_handler(ECHO, echo)
        client = await stack.enter_async_context(
            open_relay_client(listener, [relay_node.listen_addrs[0]])
        )
        dialer, dialer_dcutr = await stack.enter_async_context(punching_node(stack))
        await stack.enter_async_context(open_relay_client(dialer))
        with trio.fail_after(TIMEOUT):
            await client.wait_reserved()
            circuit = (
                relay_node.listen_addrs[0]
                .encapsulate("/p2p-circuit")
                .with_peer_id(listener.peer_id)
            )
            await dialer.connect(circuit)
            result = await listener_dcutr.wait_result(dialer.peer_id)
            assert result.success, result
            assert result.initiator and result.rtt is not None and result.attempts == 1
            other = await dialer_dcutr.wait_result(listener.peer_id)
            assert other.success and not other.initiator
            # The dialer (A in the spec) is the client of the direct connection.
            direct = dialer.host.swarm.connections_to(listener.peer_id)[0]
            assert not direct.relayed and direct.direction == "outbound"
            # New streams take the direct connection; the relayed one goes after the grace.
            stream = await dialer.new_stream(listener.peer_id, [ECHO])
            await stream.send_all(b"direct")
            await stream.send_eof()
            assert await stream.receive_some() == b"direct"
            for connection in dialer.host.swarm.connections_to(listener.peer_id):
                if connection.relayed:
                    await wait_closed(dialer, connection)
            assert [c.relayed for c in dialer.host.swarm.connections_to(listener.peer_id)] == [
                False
            ]


async def wait_closed(node: Node, connection: Connection) -> None:
    gone = trio.Event()

    def on_disconnect(closed: Connection) -> None:
        if closed is connection:
            gone.set()

    node.host.swarm.on_disconnect.append(on_disconnect)
    if not connection.closed:
        await gone.wait()


async def test_bad_dcutr_messages_only_reset_the_stream() -> None:
    async with AsyncExitStack() as stack:
        relay_node = await stack.enter_async_context(open_node())
        await stack.enter_async_context(open_relay(relay_node))
        listener, listener_dcutr = await stack.enter_async_context(punching_node(stack))
        client = await stack.enter_async_context(
            open_relay_client(listener, [relay_node.listen_addrs[0]])
        )
        # The dialer runs no DCUtR service: it only pokes the listener's.
        dialer = await stack.enter_async_context(open_node())
        await stack.enter_async_context(open_relay_client(dialer))
        with trio.fail_after(TIMEOUT):
            await client.wait_reserved()
            circuit = (
                relay_node.listen_addrs[0]
                .encapsulate("/p2p-circuit")
                .with_peer_id(listener.peer_id)
            )
            await dialer.connect(circuit)
            for garbage in (b"\xff\xff\xff\xff\x0f", b"\x02\x08\x01", b"\x00"):
                stream = await dialer.new_stream(listener.peer_id, [PROTOCOL_ID])
                await stream.send_all(garbage)
                await stream.send_eof()
                with pytest.raises(trio.BrokenResourceError):
                    while await stream.receive_some():
                        pass
            # The node is fine: the relayed connection still carries pings.
            assert len(await dialer.ping(listener.peer_id, count=2)) == 2
        # No garbage stream got as far as a punch (its only result: the dialer has no DCUtR).
        assert [r.error for r in listener_dcutr.results if not r.initiator] == []
        assert all(not r.success for r in listener_dcutr.results)
