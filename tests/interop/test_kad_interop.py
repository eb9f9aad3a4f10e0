"""Kademlia interop: NeoNet's DHT in mixed loopback networks with py-libp2p and rust-libp2p.

Each case starts two peers of the other implementation (their own KadDHT / kad
behaviour, driven through ``harness.start_kad_peer``) and three NeoNet DHT nodes,
bootstrapped across implementations, then checks both directions: values the other
put are found by NeoNet and NeoNet's (including a signed name record) by the other;
providers announced on either side are found on the other; peers of each side are
found by the other. ``NEONET_INTEROP`` narrows the set as in test_interop.py.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

from neonet.core.keys import Ed25519Identity
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.node import Node, open_node
from neonet.proto.kad import KadMessage, MessageType
from neonet.proto.kad_records import AcceptAnyValidator
from neonet.proto.names import decode_name_record, name_key
from neonet.services.kad import KadConfig, KadDHT, default_validator, open_kad
from neonet.services.names import claim_name
from tests.interop import harness

pytestmark = pytest.mark.interop
TIMEOUT = 120


def _selected() -> list[str]:
    wanted = os.environ.get("NEONET_INTEROP")
    names = list(harness.KAD_IMPLEMENTATIONS)
    if wanted:
        names = [name for name in names if name in wanted.split(",")]
    return names


@asynccontextmanager
async def mixed_network(
    implementation: str,
) -> AsyncIterator[tuple[list[harness.KadPeer], list[Node], list[KadDHT]]]:
    argv = harness.kad_peer_argv(implementation)
    async with AsyncExitStack() as stack:
        others = [
            await stack.enter_async_context(harness.start_kad_peer(implementation, argv=argv))
            for _ in range(2)
        ]
        nodes: list[Node] = []
        dhts: list[KadDHT] = []
        for _ in range(3):
            node = await stack.enter_async_context(open_node())
            dht = await stack.enter_async_context(
                open_kad(
                    node,
                    config=KadConfig(request_timeout=10.0),
                    validator=default_validator({"interop": AcceptAnyValidator()}),
                    bootstrap=[others[0].addr],
                )
            )
            nodes.append(node)
            dhts.append(dht)
        # The second foreign peer joins through NeoNet, the first learns of everyone.
        await others[1].command("bootstrap", addrs=[str(nodes[0].listen_addrs[0]), others[0].addr])
        await others[0].command("bootstrap", addrs=[str(n.listen_addrs[0]) for n in nodes])
        for dht in dhts:
            await dht.refresh(only_stale=False)
        yield others, nodes, dhts


@pytest.mark.parametrize("implementation", _selected())
async def test_kad_mixed_network(implementation: str) -> None:
    harness.kad_peer_argv(implementation)  # build outside the time limit
    with trio.fail_after(TIMEOUT):
        async with mixed_network(implementation) as (others, nodes, dhts):
            foreign = {PeerId.from_string(o.peer_id).to_bytes() for o in others}
            assert all(foreign & set(dht.table.peers()) for dht in dhts)
            table = await others[1].command("table")
            assert {str(n.peer_id) for n in nodes} & set(table["peers"])

            # Values: theirs found by NeoNet, ours (a plain one and a signed name) by them.
            await others[0].command(
                "put", key="/interop/from-other", value_hex=b"hello neonet".hex()
            )
            for dht in dhts:
                assert await dht.get_value(b"/interop/from-other") == b"hello neonet"
            assert await dhts[2].put_value(b"/interop/from-neonet", b"hello other") >= 1
            owner = Ed25519Identity.generate()
            record, _ = await claim_name(dhts[1], "Interop-Alice", owner)
            for other in others:
                got = await other.command("get", key="/interop/from-neonet")
                assert bytes.fromhex(got["value_hex"]) == b"hello other"
                got = await other.command("get", key=name_key("interop-alice").decode())
                assert decode_name_record(bytes.fromhex(got["value_hex"])) == record

            # Over the wire only: a value only one NeoNet node holds is fetched by their
            # lookup, and their GET_VALUE answers carry the values they hold.
            dhts[2].store_record(b"/interop/only-neonet", b"fetched over the wire")
            for other in others:
                got = await other.command("get", key="/interop/only-neonet")
                assert bytes.fromhex(got["value_hex"]) == b"fetched over the wire"
            for other in others:
                answer = await dhts[0].request(
                    PeerId.from_string(other.peer_id),
                    KadMessage(MessageType.GET_VALUE, b"/interop/from-other"),
                )
                assert answer is not None and answer.record is not None
                assert answer.record.value == b"hello neonet"
                assert answer.closer_peers  # and the peers it knows nearer the key

            # Providers, both ways.
            theirs, ours = b"\x12\x20" + os.urandom(32), b"\x12\x20" + os.urandom(32)
            await others[1].command("provide", key_hex=theirs.hex())
            for dht in dhts:
                found = await dht.find_providers(theirs)
                assert PeerId.from_string(others[1].peer_id).to_bytes() in [
                    p.peer_id for p in found.providers
                ]
            assert await dhts[0].provide(ours) >= 1
            for other in others:
                found = await other.command("find_providers", key_hex=ours.hex())
                assert str(nodes[0].peer_id) in found["providers"]

            # Peers, both ways.
            for dht, other in zip(dhts, [*others, others[0]], strict=True):
                result = await dht.find_peer(PeerId.from_string(other.peer_id))
                assert Multiaddr.from_string(other.addr).without_peer_id() in result.addrs
            for other in others:
                found = await other.command("find_peer", peer_id=str(nodes[2].peer_id))
                assert str(nodes[2].listen_addrs[0].without_peer_id()) in [
                    a.split("/p2p/")[0] for a in found["addrs"]
                ]
