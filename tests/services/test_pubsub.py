"""GossipSub service (neonet.services.pubsub) between NeoNet nodes over loopback TCP.

These check the trio layer (streams, heartbeat, validators, cancellation, bad input);
interop with other implementations is in tests/interop/test_pubsub_interop.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

import neonet
from neonet.core.errors import LocalProtocolError
from neonet.core.gossip import PROTOCOL_MESHSUB_V12
from neonet.core.varint import encode_uvarint
from neonet.node import Node
from neonet.proto.gossipsub_rpc import Rpc, encode_rpc, frame, sign_message
from neonet.services.pubsub import (
    Pubsub,
    PubsubConfig,
    PubsubMessage,
    Subscription,
    ValidationResult,
    open_pubsub,
)

TOPIC = "chat"


@asynccontextmanager
async def _cluster(count: int) -> AsyncIterator[list[tuple[Node, Pubsub]]]:
    """``count`` nodes, each with pubsub, node i connected to nodes i-1 and i-2 (a chain)."""
    async with AsyncExitStack() as stack:
        members: list[tuple[Node, Pubsub]] = []
        for _ in range(count):
            node = await stack.enter_async_context(neonet.open_node())
            pubsub = await stack.enter_async_context(open_pubsub(node))
            members.append((node, pubsub))
        for index in range(1, count):
            for back in (1, 2):
                if index - back >= 0:
                    await members[index][0].connect(members[index - back][0].listen_addrs[0])
        yield members


async def _wait_for(members: list[tuple[Node, Pubsub]], predicate: Callable[[], bool]) -> None:
    """Until ``predicate()`` holds, re-checked on every router event of any member."""

    async def watch(pubsub: Pubsub, done: trio.CancelScope) -> None:
        await pubsub.wait_until(predicate)
        done.cancel()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _, pubsub in members:
                nursery.start_soon(watch, pubsub, nursery.cancel_scope)


async def _receive(subscription: Subscription, count: int) -> list[PubsubMessage]:
    found: list[PubsubMessage] = []
    with trio.fail_after(10):
        async for message in subscription:
            found.append(message)
            if len(found) == count:
                break
    return found


async def test_messages_reach_every_subscriber() -> None:
    async with _cluster(5) as members:
        subscriptions = [pubsub.subscribe(TOPIC) for _, pubsub in members]
        # The mesh forms at the heartbeats; wait until every node has its neighbours.
        await _wait_for(members, lambda: all(len(p.mesh_peers(TOPIC)) >= 2 for _, p in members))
        sent = []
        for index, (_, pubsub) in enumerate(members):
            sent.append(await pubsub.publish(TOPIC, b"hello from %d" % index))
        for index, subscription in enumerate(subscriptions):
            got = await _receive(subscription, len(members))
            assert sorted(m.msg_id for m in got) == sorted(sent)
            own = [m for m in got if m.received_from is None]
            assert [m.data for m in own] == [b"hello from %d" % index]
            assert all(m.author is not None for m in got)
        for node, pubsub in members:
            assert all(p in node.connected_peers() for p in pubsub.pubsub_peers())


async def test_negotiates_meshsub_v12_between_neonet_nodes() -> None:
    async with _cluster(2) as members:
        (_, pubsub_a), (node_b, _) = members
        await _wait_for(members, lambda: pubsub_a.router.has_peer(node_b.peer_id.to_bytes()))
        assert pubsub_a.router.peer_protocol(node_b.peer_id.to_bytes()) == PROTOCOL_MESHSUB_V12


async def test_async_validator_rejects_and_local_publish_is_validated() -> None:
    async with _cluster(3) as members:
        seen_by_validator: list[bytes] = []

        async def validator(message: PubsubMessage) -> ValidationResult:
            await trio.sleep(0.01)  # validators may await (e.g. a database)
            seen_by_validator.append(message.data)
            return ValidationResult.REJECT if b"bad" in message.data else ValidationResult.ACCEPT

        for _, pubsub in members:
            pubsub.set_validator(TOPIC, validator)
        subscriptions = [pubsub.subscribe(TOPIC) for _, pubsub in members]
        await _wait_for(members, lambda: all(p.mesh_peers(TOPIC) for _, p in members))
        with pytest.raises(LocalProtocolError, match="reject"):
            await members[0][1].publish(TOPIC, b"bad one")
        await members[0][1].publish(TOPIC, b"good one")
        for subscription in subscriptions:
            (message,) = await _receive(subscription, 1)
            assert message.data == b"good one"


async def test_subscription_iteration_cancels_cleanly() -> None:
    async with _cluster(2) as members:
        subscription = members[0][1].subscribe(TOPIC)
        with trio.move_on_after(0.05) as scope:
            async for _ in subscription:
                pass
        assert scope.cancelled_caught
        await subscription.aclose()
        assert members[0][1].router.subscribed() == []
        async with members[1][1].subscribe(TOPIC) as other:
            assert other.topic == TOPIC
        assert members[1][1].router.subscribed() == []


async def test_garbage_resets_only_that_stream() -> None:
    async with _cluster(2) as members:
        (node_a, pubsub_a), (_, pubsub_b) = members
        sub_a = pubsub_a.subscribe(TOPIC)
        pubsub_b.subscribe(TOPIC)
        async with neonet.open_node() as intruder:
            await intruder.connect(node_a.listen_addrs[0])
            stream = await intruder.new_stream(node_a.peer_id, [PROTOCOL_MESHSUB_V12])
            # Announce an RPC far above the 1 MiB limit.
            await stream.send_all(encode_uvarint(64 << 20) + b"x" * 100)
            with trio.fail_after(10), pytest.raises(trio.BrokenResourceError, match="reset"):
                while await stream.receive_some():
                    pass
        await _wait_for(members, lambda: pubsub_b.mesh_peers(TOPIC))
        await pubsub_b.publish(TOPIC, b"still alive")
        (message,) = await _receive(sub_a, 1)
        assert message.data == b"still alive"


async def test_outbound_stream_lost_is_reopened_on_the_live_connection() -> None:
    async with _cluster(2) as members:
        (_, pubsub_a), (node_b, pubsub_b) = members
        key = node_b.peer_id.to_bytes()
        sub_b = pubsub_b.subscribe(TOPIC)
        pubsub_a.subscribe(TOPIC)
        await _wait_for(members, lambda: bool(pubsub_a.mesh_peers(TOPIC)))
        first = pubsub_a._writers[key]
        first.stream.reset()  # the stream dies, the connection stays
        await _wait_for(
            members, lambda: key in pubsub_a._writers and pubsub_a._writers[key] is not first
        )
        await _wait_for(members, lambda: bool(pubsub_a.mesh_peers(TOPIC)))
        await pubsub_a.publish(TOPIC, b"after the reset")
        (message,) = await _receive(sub_b, 1)
        assert message.data == b"after the reset"


async def test_explicit_peers_are_dialed_never_meshed_and_always_served() -> None:
    async with AsyncExitStack() as stack:
        explicit = await stack.enter_async_context(neonet.open_node())
        explicit_pubsub = await stack.enter_async_context(open_pubsub(explicit))
        node_a = await stack.enter_async_context(neonet.open_node())
        config = PubsubConfig(explicit_peers=(str(explicit.listen_addrs[0]),))
        pubsub_a = await stack.enter_async_context(open_pubsub(node_a, config))
        node_b = await stack.enter_async_context(neonet.open_node())
        pubsub_b = await stack.enter_async_context(open_pubsub(node_b))
        await node_b.connect(node_a.listen_addrs[0])
        members = [(explicit, explicit_pubsub), (node_a, pubsub_a), (node_b, pubsub_b)]
        inbox = explicit_pubsub.subscribe(TOPIC)
        pubsub_a.subscribe(TOPIC)
        pubsub_b.subscribe(TOPIC)
        # A dials its explicit peer by itself and learns its subscription.
        await _wait_for(members, lambda: explicit.peer_id in pubsub_a.topic_peers(TOPIC))
        await _wait_for(members, lambda: bool(pubsub_a.mesh_peers(TOPIC)))
        await pubsub_b.publish(TOPIC, b"via a to its explicit peer")
        (message,) = await _receive(inbox, 1)
        assert message.data == b"via a to its explicit peer"
        assert explicit.peer_id not in pubsub_a.mesh_peers(TOPIC)
        # The explicit peer may GRAFT A; A answers with a PRUNE, so it leaves the mesh.
        await _wait_for(members, lambda: node_a.peer_id not in explicit_pubsub.mesh_peers(TOPIC))


async def test_invalid_flooder_over_tcp_is_graylisted_while_honest_traffic_flows() -> None:
    async with _cluster(2) as members, neonet.open_node() as intruder:
        (node_a, pubsub_a), (_, pubsub_b) = members
        inbox = pubsub_a.subscribe(TOPIC)
        pubsub_b.subscribe(TOPIC)
        async with open_pubsub(intruder) as intruder_pubsub:
            intruder_pubsub.subscribe(TOPIC)
            await intruder.connect(node_a.listen_addrs[0])
            key = intruder.peer_id.to_bytes()
            await _wait_for(members, lambda: pubsub_a.router.has_peer(key))
            # A second stream carries hand-made RPCs: signed messages, then tampered.
            stream = await intruder.new_stream(node_a.peer_id, [PROTOCOL_MESHSUB_V12])
            forged = []
            for seqno in range(20):
                good = sign_message(intruder.host.identity, TOPIC, b"spam", 1000 + seqno)
                forged.append(dataclasses.replace(good, data=b"tampered %d" % seqno))
            await stream.send_all(frame(encode_rpc(Rpc(messages=forged))))
            await _wait_for(members, lambda: pubsub_a.router.peer_score(key) < -80)
            assert pubsub_a.router.stats.invalid_received >= 3
            assert intruder.peer_id not in pubsub_a.mesh_peers(TOPIC)
            await _wait_for(members, lambda: bool(pubsub_b.mesh_peers(TOPIC)))
            await pubsub_b.publish(TOPIC, b"honest")
            with trio.fail_after(10):
                async for message in inbox:
                    assert not message.data.startswith(b"tampered")
                    if message.data == b"honest":
                        break
