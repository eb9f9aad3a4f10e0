"""Circuit relay v2 against go-libp2p 0.51 (peers/go/relay.go) and rust-libp2p 0.57
(peers/rust/src/relay.rs), both roles.

- their relay (go ``relayv2.New``, rust ``relay::Behaviour``): a NeoNet node reserves on
  it and is dialed through it by that implementation and by NeoNet; NeoNet dials one of
  their peers reserved on it.
- NeoNet's relay: their client reserves on it (go checks our signed voucher with
  ``record.ConsumeEnvelope``) and another of their peers dials it through NeoNet, and
  they dial a NeoNet node reserved on NeoNet's relay.
Every case echoes data end to end through the circuit (Noise + yamux inside it).
"""

from __future__ import annotations

import os

import pytest
import trio

from neonet.core.multiaddr import Multiaddr
from neonet.node import open_node
from neonet.services.dcutr import open_dcutr
from neonet.services.relay import open_relay, open_relay_client
from tests.interop import harness
from tests.streams import echo, exchange

pytestmark = pytest.mark.interop

IMPLEMENTATIONS = [
    name
    for name in ("go-libp2p", "rust-libp2p")
    if not os.environ.get("NEONET_INTEROP") or name in os.environ["NEONET_INTEROP"].split(",")
]
AGENTS = {
    "go-libp2p": "neonet-interop/go-libp2p/0.51.0",
    "rust-libp2p": "neonet-interop/rust-libp2p/0.57.1",
}
ECHO = "/echo/1.0.0"
TIMEOUT = 60
# go-libp2p's default relay limit is 128 KiB per direction: stay well below it.
ECHO_BYTES = 32 * 1024


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def other(request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    """(name, argv prefix) of the other implementation, built once per module."""
    name: str = request.param
    return name, harness.ensure_built(name)


def check_relayed(name: str, result: dict[str, object]) -> None:
    """Their report says the connection ran through a relay."""
    assert result["echo_ok"] is True
    if name == "go-libp2p":
        assert result["limited"] is True  # go marks relayed connections as limited
    else:
        assert result["relayed"] is True


async def test_neonet_reserves_on_their_relay_and_they_dial_through(
    other: tuple[str, list[str]],
) -> None:
    name, prefix = other
    async with (
        await harness.start_mode(name, "relay", argv_prefix=prefix) as relay,
        open_node() as node,
        open_relay_client(node, [relay.addr]) as client,
    ):
        node.set_stream_handler(ECHO, echo)
        with trio.fail_after(TIMEOUT):
            await client.wait_reserved()
        (info,) = client.reservations.values()
        if name == "go-libp2p":  # rust-libp2p's relay sends no voucher (it is optional)
            assert info.voucher is not None and info.voucher.peer == node.peer_id
        assert str(info.relay) == relay.peer_id
        assert info.limit is not None and info.limit.data > 0
        circuit = f"{relay.addr}/p2p-circuit/p2p/{node.peer_id}"
        result = await harness.run_mode(
            name, "relay-dial", argv_prefix=prefix, addr=circuit, echo_bytes=ECHO_BYTES
        )
        check_relayed(name, result)
        assert result["remote_peer_id"] == str(node.peer_id)
        assert client.transport.accepted == 1


async def test_neonet_dials_their_peer_through_their_relay(
    other: tuple[str, list[str]],
) -> None:
    name, prefix = other
    async with await harness.start_mode(name, "relay", argv_prefix=prefix) as relay:
        async with await harness.start_mode(
            name, "relay-reserve", argv_prefix=prefix, relay=relay.addr
        ) as target:
            async with open_node() as node, open_relay_client(node):
                with trio.fail_after(TIMEOUT):
                    peer = await node.connect(Multiaddr.from_string(target.addr))
                    assert str(peer) == target.peer_id
                    assert node.host.swarm.connections_to(peer)[0].relayed
                    stream = await node.new_stream(peer, [ECHO])
                    payload = os.urandom(ECHO_BYTES)
                    assert await exchange(stream, payload) == payload
                    info = await node.identify(peer)
                    assert info.agent_version == AGENTS[name]


async def test_their_peers_use_neonet_relay(other: tuple[str, list[str]]) -> None:
    name, prefix = other
    async with open_node() as relay_node, open_relay(relay_node) as service:
        relay_addr = str(relay_node.listen_addrs[0])
        async with await harness.start_mode(
            name, "relay-reserve", argv_prefix=prefix, relay=relay_addr
        ) as target:
            assert target.info["limit_data_bytes"] == service.limits.circuit.data
            assert target.info["limit_duration_s"] == service.limits.circuit.duration
            if name == "go-libp2p":
                # go-libp2p accepted the reservation, including our signed voucher.
                assert target.info["voucher_verified"] is True
                assert relay_addr in target.info["relay_addrs"]
            result = await harness.run_mode(
                name, "relay-dial", argv_prefix=prefix, addr=target.addr, echo_bytes=ECHO_BYTES
            )
            check_relayed(name, result)
            assert result["remote_peer_id"] == target.peer_id
        assert service.statistics.reservations_accepted == 1
        assert service.statistics.circuits_opened == 1
        assert service.statistics.bytes_relayed >= 2 * ECHO_BYTES


async def test_they_dial_neonet_through_neonet_relay(other: tuple[str, list[str]]) -> None:
    name, prefix = other
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
            name, "relay-dial", argv_prefix=prefix, addr=circuit, echo_bytes=ECHO_BYTES
        )
        check_relayed(name, result)
        assert service.statistics.circuits_opened == 1


# --- DCUtR with rust-libp2p (dcutr::Behaviour): the relayed connection becomes direct ---------
RUST = "rust-libp2p"
needs_rust = pytest.mark.skipif(RUST not in IMPLEMENTATIONS, reason="NEONET_INTEROP excludes rust")


@needs_rust
async def test_dcutr_neonet_initiates_with_rust() -> None:
    """rust dials NeoNet through a NeoNet relay; NeoNet (the relayed listener) punches."""
    prefix = harness.ensure_built(RUST)
    async with (
        open_node() as relay_node,
        open_relay(relay_node),
        open_node(listen=()) as node,
        open_dcutr(node) as dcutr,
    ):
        await node.listen("/ip4/127.0.0.1/tcp/0")
        node.set_stream_handler(ECHO, echo)
        async with open_relay_client(node, [relay_node.listen_addrs[0]]) as client:
            with trio.fail_after(TIMEOUT):
                await client.wait_reserved()
            circuit = f"{relay_node.listen_addrs[0]}/p2p-circuit/p2p/{node.peer_id}"
            result = await harness.run_mode(
                RUST,
                "relay-dial",
                argv_prefix=prefix,
                addr=circuit,
                echo_bytes=ECHO_BYTES,
                dcutr=1,
            )
            assert result["echo_ok"] and result["relayed"] is True
            assert result["dcutr"] == {"ok": True}, result
            with trio.fail_after(TIMEOUT):
                punch = await dcutr.wait_for(lambda r: r.success)
            assert punch.initiator, punch


@needs_rust
async def test_dcutr_rust_initiates_with_neonet() -> None:
    """NeoNet dials a rust peer through a NeoNet relay; rust (the relayed listener) punches."""
    prefix = harness.ensure_built(RUST)
    async with open_node() as relay_node, open_relay(relay_node):
        relay_addr = str(relay_node.listen_addrs[0])
        async with await harness.start_mode(
            RUST, "relay-reserve", argv_prefix=prefix, relay=relay_addr, dcutr=1
        ) as target:
            async with (
                open_node(listen=()) as node,
                open_dcutr(node) as dcutr,
                open_relay_client(node),
            ):
                await node.listen("/ip4/127.0.0.1/tcp/0")
                with trio.fail_after(TIMEOUT):
                    await node.identify(await node.connect(relay_addr))
                    peer = await node.connect(Multiaddr.from_string(target.addr))
                    punch = await dcutr.wait_for(lambda r: r.peer == peer and r.success)
                    assert not punch.initiator
                    direct = node.host.swarm.connections_to(peer)[0]
                    assert not direct.relayed and direct.direction == "outbound"
                    stream = await node.new_stream(peer, [ECHO])
                    assert stream.session is direct.session
                    payload = os.urandom(ECHO_BYTES)
                    assert await exchange(stream, payload) == payload
