"""The DHT service between NeoNet nodes in one process (loopback TCP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio

import neonet
from neonet.core.errors import RemoteProtocolError
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.node import Node
from neonet.proto.kad import PROTOCOL_ID, KadMessage, KadRecord, MessageType, frame_message
from neonet.proto.kad_records import InvalidRecordError, public_key_record_key
from neonet.proto.names import name_key
from neonet.services.kad import KadConfig, KadDHT, open_kad
from neonet.services.kad_store import KadStore
from neonet.services.names import NameClaimError, claim_name, resolve_name, rotate_name

CID = b"\x12\x20" + b"\xab" * 32


@asynccontextmanager
async def network(size: int, **config: object) -> AsyncIterator[tuple[list[Node], list[KadDHT]]]:
    """``size`` server nodes, each bootstrapped from the first."""
    async with AsyncExitStack() as stack:
        nodes: list[Node] = []
        dhts: list[KadDHT] = []
        for _ in range(size):
            node = await stack.enter_async_context(neonet.open_node())
            boot = [nodes[0].listen_addrs[0]] if nodes else []
            dht = await stack.enter_async_context(
                open_kad(node, config=KadConfig(**config), bootstrap=boot)  # type: ignore[arg-type]
            )
            nodes.append(node)
            dhts.append(dht)
        for dht in dhts:
            await dht.refresh(only_stale=False)
        yield nodes, dhts


async def test_values_providers_and_peers_are_found() -> None:
    with trio.fail_after(60):
        async with network(8, k=4) as (nodes, dhts):
            assert all(len(dht.table) >= 3 for dht in dhts)
            key = public_key_record_key(nodes[1].peer_id)
            stored = await dhts[1].put_value(key, nodes[1].host.identity.public_key.to_protobuf())
            assert stored == 4  # the k closest other servers accepted it
            holders = [d for d in dhts if d.store.get_record(key, d.wall_clock()) is not None]
            assert 4 <= len(holders) <= 5
            for dht in dhts:
                assert await dht.get_value(key) == nodes[1].host.identity.public_key.to_protobuf()
            assert await dhts[2].get_value(public_key_record_key(nodes[3].peer_id)) is None

            assert await dhts[3].provide(CID) == 4
            for dht in dhts:
                found = await dht.find_providers(CID)
                assert [p.peer_id for p in found.providers] == [nodes[3].peer_id.to_bytes()]
                assert found.providers[0].addrs  # with an address to dial

            for node, dht in zip(nodes, dhts, strict=True):
                target = nodes[7] if node is not nodes[7] else nodes[0]
                result = await dht.find_peer(target.peer_id)
                assert target.listen_addrs[0].without_peer_id() in result.addrs


async def test_invalid_records_are_refused_and_never_stored() -> None:
    with trio.fail_after(30):
        async with network(3) as (nodes, dhts):
            key = public_key_record_key(nodes[1].peer_id)
            wrong = nodes[2].host.identity.public_key.to_protobuf()
            with pytest.raises(InvalidRecordError, match="does not belong"):
                await dhts[0].put_value(key, wrong)
            # Sent straight to a peer, the bad record resets that request only.
            bad = KadMessage(MessageType.PUT_VALUE, key, KadRecord(key, wrong))
            with pytest.raises((RemoteProtocolError, trio.BrokenResourceError)):
                await dhts[0].request(nodes[1].peer_id, bad)
            assert dhts[1].store.get_record(key, dhts[1].wall_clock()) is None
            assert dhts[1].refused in (1, 2)  # a failed pooled stream is retried once
            for namespace_key in (b"/unknown/x", b"no-namespace"):
                message = KadMessage(
                    MessageType.PUT_VALUE, namespace_key, KadRecord(namespace_key, b"v")
                )
                with pytest.raises((RemoteProtocolError, trio.BrokenResourceError)):
                    await dhts[0].request(nodes[1].peer_id, message)
            # The node keeps serving.
            good = nodes[1].host.identity.public_key.to_protobuf()
            assert await dhts[0].put_value(key, good) == 2


async def test_client_mode_nodes_query_but_stay_out_of_tables() -> None:
    with trio.fail_after(30):
        async with network(4) as (nodes, dhts), neonet.open_node() as client_node:
            async with open_kad(
                client_node, config=KadConfig(mode="client"), bootstrap=[nodes[0].listen_addrs[0]]
            ) as client:
                assert PROTOCOL_ID not in client_node.host.protocols
                assert len(client.table) == 4
                key = public_key_record_key(client_node.peer_id)
                assert (
                    await client.put_value(key, client_node.host.identity.public_key.to_protobuf())
                    == 4
                )
                assert (
                    client.store.get_record(key, client.wall_clock()) is None
                )  # clients store nothing
                assert await dhts[3].get_value(key) is not None
                for dht in dhts:
                    assert client_node.peer_id.to_bytes() not in dht.table


async def test_request_rate_limit_resets_the_stream_and_the_node_keeps_serving() -> None:
    with trio.fail_after(30):
        async with network(2, requests_per_second=1.0, request_burst=5.0) as (nodes, dhts):
            stream = await nodes[0].new_stream(nodes[1].peer_id, [PROTOCOL_ID])
            request = frame_message(KadMessage(MessageType.FIND_NODE, b"x"))
            answered = 0
            with pytest.raises(trio.BrokenResourceError):
                for _ in range(50):
                    await stream.send_all(request)
                    data = await stream.receive_some()
                    if not data:
                        raise trio.BrokenResourceError
                    answered += 1
            assert 1 <= answered <= 6
            assert dhts[1].refused in (1, 2)  # a failed pooled stream is retried once


async def test_records_identity_and_claims_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    with trio.fail_after(60):
        async with network(4) as (nodes, dhts):
            boot = [nodes[0].listen_addrs[0]]
            store = KadStore(path)
            identity = store.load_or_create_identity()
            async with (
                neonet.open_node(identity=identity) as node,
                open_kad(node, store=store, bootstrap=boot) as dht,
            ):
                record, stored = await claim_name(dht, "Carol", identity)
                assert stored >= 3 and record.name == "carol"
                other_key = public_key_record_key(nodes[1].peer_id)
                await dhts[1].put_value(other_key, nodes[1].host.identity.public_key.to_protobuf())
                assert dht.store.get_record(other_key, dht.wall_clock()) is not None
            store.close()
            # The others forget the claim (as if it expired there); the restarted node
            # keeps its peer ID and its stored records, and republishes the claim.
            for other in dhts:
                other.store._db.execute("DELETE FROM records")
            store = KadStore(path)
            identity2 = store.load_or_create_identity()
            assert PeerId.from_public_key(identity2.public_key) == PeerId.from_public_key(
                identity.public_key
            )
            async with (
                neonet.open_node(identity=identity2) as node,
                open_kad(node, store=store, bootstrap=boot, republish_on_start=False) as dht,
            ):
                assert dht.store.get_record(other_key, dht.wall_clock()) is not None
                assert dhts[2].store.get_record(name_key("carol"), dhts[2].wall_clock()) is None
                await dht.republish()  # what open_kad starts by itself after bootstrap
                assert dhts[2].store.get_record(name_key("carol"), dhts[2].wall_clock()) is not None
                resolved = await resolve_name(dhts[3], "CAROL")
                assert resolved is not None and resolved.peer_id == node.peer_id
            store.close()


async def test_names_claim_resolve_rotate_and_refuse_hijacks() -> None:
    alice, mallory, alice_new = (Ed25519Identity.generate() for _ in range(3))
    with trio.fail_after(60):
        async with network(6) as (_, dhts):
            record, stored = await claim_name(dhts[0], "alice", alice)
            assert stored >= 5 and record.seq == 1
            resolved = await resolve_name(dhts[4], "ALICE")
            assert resolved is not None and resolved.peer_id == PeerId.from_public_key(
                alice.public_key
            )
            # Someone else cannot claim it, whether they ask politely or put directly.
            with pytest.raises(NameClaimError, match="claimed by"):
                await claim_name(dhts[1], "Alice", mallory)
            from neonet.proto.names import sign_name_record

            hijack = sign_name_record("alice", mallory, seq=50, expires=record.expires)
            assert await dhts[1].put_value(name_key("alice"), hijack.encode(), remember=False) == 0
            resolved = await resolve_name(dhts[5], "alice")
            assert resolved is not None and resolved.public_key == alice.public_key.to_protobuf()
            # Renewal by the owner raises seq; rotation hands the name to the new key.
            renewed, _ = await claim_name(dhts[0], "alice", alice)
            assert renewed.seq == 2
            rotated, stored = await rotate_name(dhts[0], "alice", alice, alice_new)
            assert stored >= 5 and rotated.seq == 3
            for dht in dhts:
                resolved = await resolve_name(dht, "alice")
                assert resolved is not None and resolved.peer_id == PeerId.from_public_key(
                    alice_new.public_key
                )
            with pytest.raises(NameClaimError, match="not by the current key"):
                await rotate_name(dhts[2], "alice", alice, mallory)


async def test_requests_reuse_streams_and_replace_ones_the_peer_closed() -> None:
    with trio.fail_after(30):
        async with network(2) as (nodes, dhts):
            request = KadMessage(MessageType.FIND_NODE, b"x")
            peer = nodes[1].peer_id
            handlers = nodes[1].host.swarm.handlers
            serve = handlers[PROTOCOL_ID]
            served: list[neonet.Stream] = []

            async def counting(stream: neonet.Stream) -> None:
                served.append(stream)
                await serve(stream)

            handlers[PROTOCOL_ID] = counting
            for idle in dhts[0]._idle_streams.values():  # start without pooled streams
                for stream, _ in idle:
                    stream.close_now()
            dhts[0]._idle_streams.clear()
            for _ in range(5):
                assert await dhts[0].request(peer, request) is not None
            assert len(served) == 1  # five requests, one stream
            # The server ends the idle stream (as its idle timeout would): the next
            # request finds the pooled stream dead and goes out again on a new one.
            await served[0].send_eof()
            assert await dhts[0].request(peer, request) is not None
            assert len(served) == 2
