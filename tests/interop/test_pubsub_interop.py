"""GossipSub interop: mixed loopback meshes of NeoNet nodes and real other implementations.

Each case runs three NeoNet nodes (one process, this one) and three pubsub peers of the
other implementation (three processes, tests/interop/peers/), wired so that messages
must cross between the implementations in both directions, and checks that every
message published on either side reaches every subscriber on both sides.
``NEONET_INTEROP`` (comma-separated names) narrows the set.
"""

from __future__ import annotations

import os
from contextlib import AsyncExitStack

import pytest
import trio

from neonet.core.peer_id import PeerId
from neonet.node import Node, open_node
from neonet.services.pubsub import Pubsub, PubsubMessage, Subscription, open_pubsub
from tests.interop import harness

pytestmark = pytest.mark.interop

TOPIC = "neonet-interop"
OTHERS = 3
OURS = 3


def _selected() -> list[str]:
    wanted = os.environ.get("NEONET_INTEROP")
    names = list(harness.PUBSUB_IMPLEMENTATIONS)
    if wanted:
        names = [name for name in names if name in wanted.split(",")]
    return names


async def _collect(subscription: Subscription, into: list[PubsubMessage]) -> None:
    async for message in subscription:
        into.append(message)


@pytest.mark.parametrize("implementation", _selected())
async def test_mixed_mesh_delivers_both_ways(implementation: str) -> None:
    argv = harness.pubsub_argv(implementation)  # builds before any time limit
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            ours: list[tuple[Node, Pubsub]] = []
            for _ in range(OURS):
                node = await stack.enter_async_context(open_node())
                ours.append((node, await stack.enter_async_context(open_pubsub(node))))
            others = [
                await stack.enter_async_context(
                    harness.start_pubsub_peer(implementation, argv=argv)
                )
                for _ in range(OTHERS)
            ]
            # Wiring: a NeoNet chain, a chain of the others, and one bridge per pair
            # (NeoNet i dials other i), so traffic has to cross in both directions.
            await ours[1][0].connect(ours[0][0].listen_addrs[0])
            await ours[2][0].connect(ours[1][0].listen_addrs[0])
            for index in range(1, OTHERS):
                await others[index].command("connect", "connected", addr=others[index - 1].addr)
            for index in range(OURS):
                await ours[index][0].connect(others[index].addr)

            received: list[list[PubsubMessage]] = [[] for _ in ours]
            nursery = await stack.enter_async_context(trio.open_nursery())
            stack.callback(nursery.cancel_scope.cancel)
            for index, (_, pubsub) in enumerate(ours):
                nursery.start_soon(_collect, pubsub.subscribe(TOPIC), received[index])
            for other in others:
                await other.command("subscribe", "subscribed", topic=TOPIC)
            # Wait until every NeoNet node has its bridge peer and its NeoNet neighbours
            # in its mesh (a GRAFT the other side refused would have been answered with
            # a PRUNE by then: the mesh is checked again after the other side's answer).
            # Only a node's own messages are flooded to every subscriber; forwarded
            # ones follow mesh links, and mesh peers get no IHAVE for what they missed:
            # publishing before a chain link is in the mesh loses messages for good.
            for index, (_, pubsub) in enumerate(ours):
                wanted = {others[index].peer_id} | {
                    str(ours[neighbour][0].peer_id)
                    for neighbour in (index - 1, index + 1)
                    if 0 <= neighbour < OURS
                }

                def meshed(pubsub: Pubsub = pubsub, wanted: set[str] = wanted) -> bool:
                    return wanted <= {str(peer) for peer in pubsub.mesh_peers(TOPIC)}

                await pubsub.wait_until(meshed)

            expected: set[bytes] = set()
            for index, (_, pubsub) in enumerate(ours):
                data = b"from neonet %d" % index
                await pubsub.publish(TOPIC, data)
                expected.add(data)
            for index, other in enumerate(others):
                data = b"from %s %d" % (implementation.encode(), index)
                await other.command("publish", "published", topic=TOPIC, data=data.hex())
                expected.add(data)

            # Every NeoNet subscriber gets all six (its own included)...
            for index, (_, pubsub) in enumerate(ours):
                await pubsub.wait_until(lambda i=index: {m.data for m in received[i]} >= expected)
                assert sorted(m.data for m in received[index]) == sorted(expected)
            # ...and every subscriber of the other implementation all the others' messages.
            for other in others:
                for data in expected:
                    if data.startswith(b"from %s" % implementation.encode()):
                        continue  # own messages: whether they are echoed is the peer's choice
                    await other.wait_event("message", topic=TOPIC, data=data.hex())
                foreign = {bytes.fromhex(m["data"]) for m in other.messages(TOPIC)}
                assert {d for d in expected if d.startswith(b"from neonet")} <= foreign


async def test_one_mesh_of_every_implementation() -> None:
    """Two NeoNet nodes and one pubsub peer of each selected implementation in one mesh.

    The foreign peers form a chain among themselves and each also dials a NeoNet node,
    so messages cross between every pair of implementations, directly or relayed.
    """
    names = _selected()
    argvs = {name: harness.pubsub_argv(name) for name in names}
    with trio.fail_after(180):
        async with AsyncExitStack() as stack:
            ours: list[tuple[Node, Pubsub]] = []
            for _ in range(2):
                node = await stack.enter_async_context(open_node())
                ours.append((node, await stack.enter_async_context(open_pubsub(node))))
            await ours[1][0].connect(ours[0][0].listen_addrs[0])
            others = [
                await stack.enter_async_context(harness.start_pubsub_peer(name, argv=argvs[name]))
                for name in names
            ]
            for index, other in enumerate(others):
                if index:
                    await other.command("connect", "connected", addr=others[index - 1].addr)
                await ours[index % 2][0].connect(other.addr)

            received: list[list[PubsubMessage]] = [[], []]
            nursery = await stack.enter_async_context(trio.open_nursery())
            stack.callback(nursery.cancel_scope.cancel)
            for index, (_, pubsub) in enumerate(ours):
                nursery.start_soon(_collect, pubsub.subscribe(TOPIC), received[index])
            for other in others:
                await other.command("subscribe", "subscribed", topic=TOPIC)
            for index, other in enumerate(others):
                pubsub = ours[index % 2][1]

                def bridged(pubsub: Pubsub = pubsub, bridge: str = other.peer_id) -> bool:
                    return bridge in {str(peer) for peer in pubsub.mesh_peers(TOPIC)}

                await pubsub.wait_until(bridged)
            # The two NeoNet nodes are linked directly: wait for that mesh link too. GossipSub
            # relays only along the mesh, and a message relayed before the heartbeat grafts
            # the link would reach the other node through nothing (gossip goes to non-mesh
            # peers, and by then it is a mesh peer).
            for (_, pubsub), (other_node, _) in ((ours[0], ours[1]), (ours[1], ours[0])):

                def linked(pubsub: Pubsub = pubsub, peer: PeerId = other_node.peer_id) -> bool:
                    return peer in pubsub.mesh_peers(TOPIC)

                await pubsub.wait_until(linked)

            sent: dict[str, bytes] = {}
            for index, (_, pubsub) in enumerate(ours):
                sent[f"neonet-{index}"] = b"from neonet %d" % index
                await pubsub.publish(TOPIC, sent[f"neonet-{index}"])
            for name, other in zip(names, others, strict=True):
                sent[name] = b"from " + name.encode()
                await other.command("publish", "published", topic=TOPIC, data=sent[name].hex())

            for index, (_, pubsub) in enumerate(ours):
                await pubsub.wait_until(
                    lambda i=index: {m.data for m in received[i]} >= set(sent.values())
                )
            for name, other in zip(names, others, strict=True):
                for author, data in sent.items():
                    if author != name:
                        await other.wait_event("message", topic=TOPIC, data=data.hex())
