"""The GossipSub router engine (neonet.proto.gossipsub) in in-memory networks.

Every test runs on both backends (the mesh, seen-cache and message cache come from the
core). Figures printed (duplicates with and without IDONTWANT) show with ``-s``.
"""

from __future__ import annotations

import dataclasses

import pytest

from neonet.core.backend import Implementation
from neonet.core.gossip import (
    PROTOCOL_FLOODSUB,
    PROTOCOL_MESHSUB_V10,
    PROTOCOL_MESHSUB_V11,
    PROTOCOL_MESHSUB_V12,
    GossipParams,
)
from neonet.proto.gossipsub import PendingValidation, RouterConfig, ValidationResult
from neonet.proto.gossipsub_rpc import Message, Prune, Rpc, sign_message
from tests.proto.gossip_network import GossipNetwork

TOPIC = "blocks"


def _network(backend: Implementation, count: int = 20, degree: int = 8) -> GossipNetwork:
    network = GossipNetwork(backend, count)
    network.connect_random(degree, seed=7)
    network.subscribe_all(TOPIC)
    network.heartbeat(3)
    return network


def test_every_subscriber_gets_every_message_once(backend: Implementation) -> None:
    network = _network(backend)
    params = GossipParams()
    for node in network.nodes:
        mesh = node.router.mesh_peers(TOPIC)
        assert params.d_lo <= len(mesh) <= params.d_hi
    ids = [network.publish(index, TOPIC, b"m%d" % index) for index in range(0, 20, 3)]
    for msg_id in ids:
        assert network.receivers(msg_id) == list(range(20))
    for node in network.nodes:
        assert len(node.received) == len(ids) == len({m for m, _ in node.received})


def test_mesh_is_symmetric(backend: Implementation) -> None:
    network = _network(backend)
    for node in network.nodes:
        for peer in node.router.mesh_peers(TOPIC):
            other = network.nodes[network.by_peer[peer]]
            assert node.peer in other.router.mesh_peers(TOPIC)


@pytest.mark.parametrize("flood_publish", [True, False])
def test_non_subscribers_neither_receive_nor_relay(
    backend: Implementation, flood_publish: bool
) -> None:
    network = GossipNetwork(backend, 6, config=RouterConfig(flood_publish=flood_publish))
    network.connect_random(4, seed=3)
    network.subscribe_all(TOPIC, [0, 1, 2])
    network.heartbeat(2)
    msg_id = network.publish(3, TOPIC, b"from a non-subscriber (fan-out)")
    assert network.receivers(msg_id) == [0, 1, 2]
    # Without flood publishing, the publisher keeps fan-out state for the topic.
    assert bool(network.nodes[3].router.mesh.fanout_peers(TOPIC)) != flood_publish


def test_gossip_repairs_a_lost_forward(backend: Implementation) -> None:
    """IHAVE/IWANT: a node whose every forward was dropped gets the message by gossip."""
    network = _network(backend, count=20, degree=16)  # more peers than mesh slots
    victim = 5

    def drop_messages_to_victim(source: int, target: int, rpc: Rpc) -> Rpc | None:
        if target == victim and rpc.raw_messages:
            rpc = dataclasses.replace(rpc, raw_messages=[])
        return rpc

    network.link_filter = drop_messages_to_victim
    msg_id = network.publish(0, TOPIC, b"repair me")
    assert victim not in network.receivers(msg_id)
    network.link_filter = None
    network.heartbeat(3)  # the message stays in the gossip window for 3 heartbeats
    assert network.nodes[victim].router.stats.iwant_sent >= 1
    assert victim in network.receivers(msg_id)


def test_floodsub_and_meshsub_v10_peers_are_served(backend: Implementation) -> None:
    network = GossipNetwork(backend, 4)
    network.connect(0, 1, PROTOCOL_MESHSUB_V12)
    network.connect(0, 2, PROTOCOL_FLOODSUB)
    network.connect(0, 3, PROTOCOL_MESHSUB_V10)
    network.subscribe_all(TOPIC)
    network.heartbeat(2)
    assert network.nodes[2].peer not in network.nodes[0].router.mesh_peers(TOPIC)
    for publisher in range(4):
        msg_id = network.publish(publisher, TOPIC, b"hello from %d" % publisher)
        assert network.receivers(msg_id) == [0, 1, 2, 3]


def test_validation_reject_ignore_and_accept(backend: Implementation) -> None:
    network = _network(backend, count=8, degree=4)
    for node in network.nodes:
        node.router.set_validated(TOPIC, True)

    def validator(index: int, pending: PendingValidation) -> ValidationResult:
        if pending.message.data.startswith(b"bad"):
            return ValidationResult.REJECT
        if pending.message.data.startswith(b"meh"):
            return ValidationResult.IGNORE
        return ValidationResult.ACCEPT

    network.validator = validator
    good = network.publish(0, TOPIC, b"good")
    bad = network.publish(0, TOPIC, b"bad")
    meh = network.publish(0, TOPIC, b"meh")
    assert network.receivers(good) == list(range(8))
    # The publisher delivers its own message (it validates before publishing); nobody else.
    assert network.receivers(bad) == [0]
    assert network.receivers(meh) == [0]
    first_hops = [network.nodes[network.by_peer[p]] for p in network.nodes[0].router.peers()]
    publisher = network.nodes[0].peer
    assert all(node.router.peer_score(publisher) < 0 for node in first_hops)  # P4
    # A received encoding is kept only until the message is forwarded or judged: the
    # delivery records (up to max_tracked_deliveries) must not pin message bodies.
    tracked = [d for node in network.nodes for d in node.router._deliveries.values()]
    assert len(tracked) > 3
    assert all(delivery.received is None for delivery in tracked)


def _flood_invalid(network: GossipNetwork, attacker: int, target: int, count: int) -> None:
    """``attacker`` sends ``count`` messages with broken signatures to ``target``."""
    node = network.nodes[attacker]
    for seqno in range(count):
        good = sign_message(node.identity, TOPIC, b"spam %d" % seqno, 10_000 + seqno)
        forged = dataclasses.replace(good, data=b"tampered %d" % seqno)
        network.nodes[target].router.handle_rpc(node.peer, Rpc(messages=[forged]), network.now)


def test_invalid_flooder_is_graylisted_and_cut_off(backend: Implementation) -> None:
    network = _network(backend, count=10, degree=6)
    attacker = 9
    victims = [network.by_peer[p] for p in network.nodes[attacker].router.peers()]
    for victim in victims:
        _flood_invalid(network, attacker, victim, 20)
    network.heartbeat(1)
    for victim in victims:
        router = network.nodes[victim].router
        assert router.peer_score(network.nodes[attacker].peer) < -80  # graylist threshold
        assert network.nodes[attacker].peer not in router.mesh_peers(TOPIC)
    # Further RPCs from it, even valid ones, are dropped unread.
    before = sum(network.nodes[v].router.stats.rpcs_graylisted for v in victims)
    msg_id = network.publish(attacker, TOPIC, b"ignored")
    after = sum(network.nodes[v].router.stats.rpcs_graylisted for v in victims)
    assert after > before
    assert network.receivers(msg_id) == [attacker]
    # Honest delivery goes on.
    honest = network.publish(0, TOPIC, b"still fine")
    assert set(network.receivers(honest)) >= set(range(9))


def test_duplicate_flooder_is_graylisted(backend: Implementation) -> None:
    network = _network(backend, count=8, degree=4)
    attacker, victim = 7, network.by_peer[next(iter(network.nodes[7].router.peers()))]
    node = network.nodes[attacker]
    message = sign_message(node.identity, TOPIC, b"again and again", 999)
    for _ in range(30):
        network.nodes[victim].router.handle_rpc(node.peer, Rpc(messages=[message]), network.now)
    network.pump()
    assert network.nodes[victim].router.peer_score(node.peer) < -80
    stats = network.nodes[victim].router.stats
    # A few repeats cost P7 enough to graylist it; the rest are dropped unread.
    assert stats.duplicates_received < 10
    assert stats.duplicates_received + stats.rpcs_graylisted == 29
    honest = network.publish(0, TOPIC, b"honest")
    assert set(network.receivers(honest)) >= set(range(7))


def test_graft_during_backoff_is_refused_and_penalised(backend: Implementation) -> None:
    network = GossipNetwork(backend, 2)
    network.connect(0, 1)
    network.subscribe_all(TOPIC)
    a, b = network.nodes
    b.router.handle_rpc(a.peer, Rpc(control=_control(prune=[Prune(TOPIC, (), 60)])), network.now)
    a.router.drain()
    assert a.peer not in b.router.mesh_peers(TOPIC)
    # b now holds a backoff for a: a GRAFT from a inside it is refused with a PRUNE.
    bad = Rpc(control=_control(graft=[TOPIC]))
    b.router.drain()
    b.router.handle_rpc(a.peer, bad, network.now + 1)
    reply = b.router.drain().send[a.peer]
    assert [p.topic for p in reply.control.prune] == [TOPIC]
    assert a.peer not in b.router.mesh_peers(TOPIC)


def _control(**entries: list[object]) -> object:
    from neonet.proto.gossipsub_rpc import Control

    return Control(**entries)  # type: ignore[arg-type]


def test_px_accepted_only_from_well_scored_peers(backend: Implementation) -> None:
    network = GossipNetwork(backend, 2)
    network.connect(0, 1)
    network.subscribe_all(TOPIC)
    a, b = network.nodes
    stranger = b"\x00\x24" + bytes(36)
    prune = Rpc(control=_control(prune=[Prune(TOPIC, (stranger,), 60)]))
    b.router.handle_rpc(a.peer, prune, network.now)
    assert b.router.drain().px == []  # score 0 < accept_px_threshold 10
    for seqno in range(20):  # a earns first-delivery credit (P2)
        message = sign_message(a.identity, TOPIC, b"%d" % seqno, seqno + 1)
        b.router.handle_rpc(a.peer, Rpc(messages=[message]), network.now)
    b.router.heartbeat(network.now + 1)  # rewards count from the next heartbeat (cached)
    b.router.handle_rpc(a.peer, Rpc(control=_control(graft=[TOPIC])), network.now + 100)
    b.router.handle_rpc(a.peer, prune, network.now + 100)
    assert stranger in b.router.drain().px


def test_ihave_flood_is_bounded(backend: Implementation) -> None:
    network = GossipNetwork(backend, 2)
    network.connect(0, 1)
    network.subscribe_all(TOPIC)
    a, b = network.nodes
    b.router.drain()
    cap = b.router.config.max_ihave_length
    asked = []
    for tick in range(1, 9):
        asked_before = b.router.stats.iwant_sent
        for round_ in range(30):
            ids = [b"%d-%d-%d" % (tick, round_, i) for i in range(1000)]
            rpc = Rpc(control=_control(ihave=[(TOPIC, ids)]))
            b.router.handle_rpc(a.peer, rpc, network.now + tick)
        asked.append(b.router.stats.iwant_sent - asked_before)
        b.router.drain()
        b.router.heartbeat(network.now + tick + 0.5)
    # 5 IHAVEs' worth of IWANTs per heartbeat, not 30; nothing promised ever arrived, so
    # each heartbeat with broken promises cost P7 until the peer fell under the gossip
    # threshold, after which its IHAVEs are ignored.
    assert asked[:4] == [cap] * 4
    assert asked[-1] == 0
    assert set(asked) == {cap, 0}
    assert b.router.peer_score(a.peer) < b.router.config.thresholds.gossip_threshold


def test_oversized_and_unsigned_messages_are_invalid(backend: Implementation) -> None:
    config = RouterConfig(max_message_size=100)
    network = GossipNetwork(backend, 2, config=config)
    network.connect(0, 1)
    network.subscribe_all(TOPIC)
    a, b = network.nodes
    big = sign_message(a.identity, TOPIC, bytes(101), 1)
    b.router.handle_rpc(a.peer, Rpc(messages=[big, Message(TOPIC, b"unsigned")]), network.now)
    assert b.router.stats.invalid_received == 2
    assert b.router.drain().deliver == []


def test_idontwant_lowers_duplicates(backend: Implementation) -> None:
    """v1.2: the same network with and without IDONTWANT; messages of 2 KB, validated."""
    figures = {}
    for protocol in (PROTOCOL_MESHSUB_V11, PROTOCOL_MESHSUB_V12):
        network = GossipNetwork(backend, 30)
        network.connect_random(10, seed=11, protocol=protocol)
        for node in network.nodes:
            node.router.set_validated(TOPIC, True)
        network.subscribe_all(TOPIC)
        network.heartbeat(3)
        before = network.duplicates()
        ids = [network.publish(i % 30, TOPIC, bytes(2048) + bytes([i])) for i in range(20)]
        assert all(len(network.receivers(msg_id)) == 30 for msg_id in ids)
        figures[protocol] = (network.duplicates() - before) / (20 * 30)
    print(
        f"\nduplicates per message per node: without IDONTWANT {figures[PROTOCOL_MESHSUB_V11]:.2f},"
        f" with IDONTWANT {figures[PROTOCOL_MESHSUB_V12]:.2f}"
    )
    assert figures[PROTOCOL_MESHSUB_V12] < 0.5 * figures[PROTOCOL_MESHSUB_V11]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_churn_keeps_delivering(backend: Implementation, seed: int) -> None:
    network = GossipNetwork(backend, 16)
    network.connect_random(6, seed=seed)
    network.subscribe_all(TOPIC)
    network.heartbeat(2)
    for node in (3, 8):
        for peer in list(network.nodes[node].router.peers()):
            network.disconnect(node, network.by_peer[peer])
    network.heartbeat(2)
    alive = [i for i in range(16) if i not in (3, 8)]
    msg_id = network.publish(0, TOPIC, b"after churn")
    assert network.receivers(msg_id) == alive
