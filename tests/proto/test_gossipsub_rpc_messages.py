"""Several messages in one received RPC (neonet.proto.gossipsub, ``_handle_received``).

RPCs often carry more than one message (consecutive messages-only RPCs of one read are
merged by ``decode_rpcs``; in ``neonet bench gossip --quick`` 53-74% of the messages
arrived in RPCs of 2-25). These tests pin what the router does with them, on both
backends: every copy is looked up in the seen-cache as it comes, so the second copy of
an ID in the same RPC is a duplicate, and a forged first copy (not marked seen) does not
shadow the genuine one after it. (Session 6 tried a batch path, one seen-cache lookup
and insert per RPC; it was slower per copy and was dropped: docs/notes.md.)
"""

from __future__ import annotations

import dataclasses

from neonet.core.backend import Implementation
from neonet.core.gossip import PROTOCOL_MESHSUB_V11, PROTOCOL_MESHSUB_V12
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.proto.gossipsub import GossipRouter, ValidationResult
from neonet.proto.gossipsub_rpc import Control, Rpc, decode_rpc, encode_rpc, sign_message

TOPIC = "a"


def _identity(number: int) -> tuple[Ed25519Identity, bytes]:
    identity = Ed25519Identity.from_seed(number.to_bytes(32, "big"))
    return identity, PeerId.from_public_key(identity.public_key).to_bytes()


LOCAL = _identity(1000)
PEERS = [_identity(number) for number in range(4)]
AUTHOR = _identity(2000)[0]


def _router(backend: Implementation) -> GossipRouter:
    router = GossipRouter(LOCAL[0], LOCAL[1], seed=42, implementation=backend)
    router.set_validated("v", True)
    for index, (_, peer) in enumerate(PEERS):
        protocol = PROTOCOL_MESHSUB_V12 if index % 2 else PROTOCOL_MESHSUB_V11
        router.add_peer(peer, protocol, index % 2 == 0, 0.0, "127.0.0.1")
        router.handle_rpc(peer, Rpc(subscriptions=[(True, TOPIC), (True, "v")]), 0.0)
    router.subscribe(TOPIC, 0.0)
    router.subscribe("v", 0.0)
    router.heartbeat(1.0)
    router.drain()
    return router


def _wire(rpc: Rpc) -> Rpc:
    return decode_rpc(encode_rpc(rpc), lazy=True)  # as the service decodes


def test_second_copy_in_the_same_rpc_is_a_duplicate(backend: Implementation) -> None:
    router = _router(backend)
    first, second, third = (sign_message(AUTHOR, TOPIC, b"m%d" % n, n) for n in (1, 2, 3))
    sender = PEERS[0][1]
    router.handle_rpc(sender, _wire(Rpc(messages=[first, second, first, third])), 2.0)
    stats = router.stats
    assert (stats.messages_received, stats.duplicates_received) == (3, 1)
    out = router.drain()
    assert [d.message for d in out.deliver] == [first, second, third]
    # Each new message is forwarded once to every mesh peer but the sender.
    forwarded = {peer: len(rpc.raw_messages) for peer, rpc in out.send.items()}
    assert sender not in forwarded
    assert set(forwarded.values()) == {3}
    assert set(forwarded) == set(router.mesh_peers(TOPIC)) - {sender}
    # IHAVE of the three and one unknown: only the unknown one is asked for.
    ids = [m.from_peer + m.seqno for m in (first, second, third)]  # type: ignore[operator]
    ihave = Control(ihave=[(TOPIC, [*ids, b"never seen"])])
    router.handle_rpc(PEERS[1][1], _wire(Rpc(control=ihave)), 2.0)
    assert router.drain().send[PEERS[1][1]].control.iwant == [b"never seen"]


def test_forged_first_copy_does_not_shadow_the_genuine_one(backend: Implementation) -> None:
    router = _router(backend)
    genuine = sign_message(AUTHOR, TOPIC, b"genuine", 7)
    forged = dataclasses.replace(genuine, data=b"forged")
    router.handle_rpc(PEERS[0][1], _wire(Rpc(messages=[forged, genuine, genuine])), 2.0)
    stats = router.stats
    counts = (stats.invalid_received, stats.messages_received, stats.duplicates_received)
    assert counts == (1, 2, 1)
    assert [d.message for d in router.drain().deliver] == [genuine]


def test_copy_of_a_message_waiting_for_validation_is_a_duplicate(
    backend: Implementation,
) -> None:
    router = _router(backend)
    message = sign_message(AUTHOR, "v", b"judge me", 9)
    router.handle_rpc(PEERS[2][1], _wire(Rpc(messages=[message, message])), 2.0)
    out = router.drain()
    assert [p.message for p in out.validate] == [message]
    assert out.deliver == []
    assert router.stats.duplicates_received == 1
    router.validation_done(out.validate[0], ValidationResult.ACCEPT, 2.5)
    assert [d.message for d in router.drain().deliver] == [message]
