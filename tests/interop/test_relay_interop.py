"""Circuit relay v2 against go-libp2p 0.51 (peers/go/relay.go), both roles.

- go-libp2p's relay (``relayv2.New``): a NeoNet node reserves on it and is dialed
  through it by go-libp2p and by NeoNet; NeoNet dials a go-libp2p peer reserved on it.
- NeoNet's relay: go-libp2p reserves on it (checking our signed voucher with
  ``record.ConsumeEnvelope``) and another go-libp2p dials it through NeoNet.
Every case echoes data end to end through the circuit (Noise + yamux inside it).
"""

from __future__ import annotations

import os

import pytest
import trio

from neonet.core.multiaddr import Multiaddr
from neonet.node import Stream, open_node
from neonet.services.relay import open_relay, open_relay_client
from tests.interop import harness

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        bool(os.environ.get("NEONET_INTEROP"))
        and "go-libp2p" not in os.environ["NEONET_INTEROP"].split(","),
        reason="NEONET_INTEROP excludes go-libp2p",
    ),
]

GO = "go-libp2p"
ECHO = "/echo/1.0.0"
TIMEOUT = 60
# go-libp2p's default relay limit is 128 KiB per direction: stay well below it.
ECHO_BYTES = 32 * 1024


@pytest.fixture(scope="module")
def go_peer() -> list[str]:
    return harness.ensure_built(GO)


async def echo(stream: Stream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.send_eof()


async def exchange(stream: Stream, payload: bytes) -> bytes:
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


async def test_neonet_reserves_on_go_relay_and_go_dials_through(go_peer: list[str]) -> None:
    async with (
        await harness.start_mode(GO, "relay", argv_prefix=go_peer) as relay,
        open_node() as node,
        open_relay_client(node, [relay.addr]) as client,
    ):
        node.set_stream_handler(ECHO, echo)
        with trio.fail_after(TIMEOUT):
            await client.wait_reserved()
        (info,) = client.reservations.values()
        assert info.voucher is not None and info.voucher.peer == node.peer_id
        assert str(info.relay) == relay.peer_id
        assert info.limit is not None and info.limit.data > 0
        circuit = f"{relay.addr}/p2p-circuit/p2p/{node.peer_id}"
        result = await harness.run_mode(
            GO, "relay-dial", argv_prefix=go_peer, addr=circuit, echo_bytes=ECHO_BYTES
        )
        assert result["echo_ok"] and result["limited"] is True
        assert result["remote_peer_id"] == str(node.peer_id)
        assert client.transport.accepted == 1


async def test_neonet_dials_go_peer_through_go_relay(go_peer: list[str]) -> None:
    async with await harness.start_mode(GO, "relay", argv_prefix=go_peer) as relay:
        async with await harness.start_mode(
            GO, "relay-reserve", argv_prefix=go_peer, relay=relay.addr
        ) as target:
            assert target.info["voucher_verified"] is True
            async with open_node() as node, open_relay_client(node):
                with trio.fail_after(TIMEOUT):
                    peer = await node.connect(Multiaddr.from_string(target.addr))
                    assert str(peer) == target.peer_id
                    assert node.host.swarm.connections_to(peer)[0].relayed
                    stream = await node.new_stream(peer, [ECHO])
                    payload = os.urandom(ECHO_BYTES)
                    assert await exchange(stream, payload) == payload
                    info = await node.identify(peer)
                    assert info.agent_version == "neonet-interop/go-libp2p/0.51.0"


async def test_go_peers_use_neonet_relay(go_peer: list[str]) -> None:
    async with open_node() as relay_node, open_relay(relay_node) as service:
        relay_addr = str(relay_node.listen_addrs[0])
        async with await harness.start_mode(
            GO, "relay-reserve", argv_prefix=go_peer, relay=relay_addr
        ) as target:
            # go-libp2p accepted the reservation, including our signed voucher.
            assert target.info["voucher_verified"] is True
            assert target.info["limit_data_bytes"] == service.limits.circuit.data
            assert target.info["limit_duration_s"] == service.limits.circuit.duration
            assert relay_addr in target.info["relay_addrs"]
            result = await harness.run_mode(
                GO, "relay-dial", argv_prefix=go_peer, addr=target.addr, echo_bytes=ECHO_BYTES
            )
            assert result["echo_ok"] and result["limited"] is True
            assert result["remote_peer_id"] == target.peer_id
        assert service.statistics.reservations_accepted == 1
        assert service.statistics.circuits_opened == 1
        assert service.statistics.bytes_relayed >= 2 * ECHO_BYTES


async def test_go_peer_dials_neonet_through_neonet_relay(go_peer: list[str]) -> None:
    async with (
        open_node() as relay_node,
        open_relay(relay_node) as service,
        open_node() as node,
        open_relay_client(node, [relay_node.listen_addrs[0]]) as client,
    ):
        node.set_stream_handler(ECHO, echo)
        with trio.fail_after(TIMEOUT):
            await client.wait_reserved()
        circuit = f"{relay_node.listen_addrs[0]}/p2p-circuit/p2p/{node.peer_id}"
        result = await harness.run_mode(
            GO, "relay-dial", argv_prefix=go_peer, addr=circuit, echo_bytes=ECHO_BYTES
        )
        assert result["echo_ok"]
        assert service.statistics.circuits_opened == 1
