"""GossipSub v1.1 peer scoring (neonet.proto.gossipsub_score): each parameter alone."""

from __future__ import annotations

import pytest

from neonet.proto.gossipsub_score import (
    PeerScore,
    ScoreParams,
    ScoreThresholds,
    TopicScoreParams,
)

PEER = b"peer-a"
OTHER = b"peer-b"
TOPIC = "t"


def _score(**topic: float) -> PeerScore:
    params = ScoreParams(default_topic=TopicScoreParams(**topic))  # type: ignore[arg-type]
    score = PeerScore(params)
    score.add_peer(PEER, "10.0.0.1")
    return score


def test_time_in_mesh_p1_grows_and_caps() -> None:
    score = _score(time_in_mesh_weight=1.0, time_in_mesh_quantum=1.0, time_in_mesh_cap=10.0)
    score.graft(PEER, TOPIC, 0.0)
    assert score.score(PEER, 4.0) == pytest.approx(4.0)
    assert score.score(PEER, 100.0) == pytest.approx(10.0)
    score.prune(PEER, TOPIC, 100.0)
    assert score.score(PEER, 101.0) == 0.0


def test_first_deliveries_p2_cap_and_decay() -> None:
    score = _score(first_message_deliveries_cap=5.0, first_message_deliveries_decay=0.5)
    for _ in range(8):
        score.first_delivery(PEER, TOPIC)
    assert score.score(PEER, 0.0) == pytest.approx(5.0)
    score.refresh(0.0)
    score.refresh(1.0)  # one decay interval
    assert score.score(PEER, 1.0) == pytest.approx(2.5)


def test_mesh_delivery_deficit_p3_and_sticky_p3b() -> None:
    score = _score(
        time_in_mesh_weight=0.0,
        first_message_deliveries_weight=0.0,
        mesh_message_deliveries_weight=-1.0,
        mesh_message_deliveries_threshold=4.0,
        mesh_message_deliveries_activation=2.0,
        mesh_failure_penalty_weight=-1.0,
    )
    score.graft(PEER, TOPIC, 0.0)
    assert score.score(PEER, 1.0) == 0.0  # not active yet
    score.first_delivery(PEER, TOPIC)
    assert score.score(PEER, 3.0) == pytest.approx(-9.0)  # (4 - 1)^2
    score.prune(PEER, TOPIC, 3.0)
    assert score.score(PEER, 4.0) == pytest.approx(-9.0)  # P3b keeps it after the prune


def test_near_first_deliveries_count_only_inside_the_window() -> None:
    score = _score(
        time_in_mesh_weight=0.0,
        first_message_deliveries_weight=0.0,
        mesh_message_deliveries_weight=-1.0,
        mesh_message_deliveries_threshold=2.0,
        mesh_message_deliveries_activation=0.0,
        mesh_message_deliveries_window=0.01,
    )
    score.graft(PEER, TOPIC, 0.0)
    score.near_first_delivery(PEER, TOPIC, first_seen=1.0, now=1.5)  # too late
    assert score.score(PEER, 2.0) == pytest.approx(-4.0)
    score.near_first_delivery(PEER, TOPIC, first_seen=2.0, now=2.005)
    assert score.score(PEER, 2.0) == pytest.approx(-1.0)


def test_invalid_messages_p4_are_squared() -> None:
    score = _score(first_message_deliveries_weight=0.0)
    for _ in range(3):
        score.invalid_delivery(PEER, TOPIC)
    assert score.score(PEER, 0.0) == pytest.approx(-90.0)
    assert score.score(PEER, 0.0) < ScoreThresholds().graylist_threshold


def test_app_score_p5() -> None:
    score = _score()
    score.set_app_score(PEER, -7.5)
    assert score.score(PEER, 0.0) == pytest.approx(-7.5)


def test_ip_colocation_p6_spares_loopback() -> None:
    params = ScoreParams(ip_colocation_factor_threshold=2, ip_colocation_factor_weight=-1.0)
    score = PeerScore(params)
    peers = [bytes([i]) for i in range(5)]
    for peer in peers:
        score.add_peer(peer, "10.0.0.9")
    assert score.score(peers[0], 0.0) == pytest.approx(-9.0)  # (5 - 2)^2
    local = PeerScore(params)
    for peer in peers:
        local.add_peer(peer, "127.0.0.1")
    assert local.score(peers[0], 0.0) == 0.0


def test_behaviour_penalty_p7_above_threshold() -> None:
    score = _score()
    score.behaviour_penalty(PEER)
    assert score.score(PEER, 0.0) == 0.0  # at the threshold (1): no penalty yet
    score.behaviour_penalty(PEER, 3.0)
    assert score.score(PEER, 0.0) == pytest.approx(-90.0)  # -10 x (4 - 1)^2


def test_bad_scores_survive_reconnection_good_ones_do_not() -> None:
    score = _score(first_message_deliveries_weight=0.0)
    score.add_peer(OTHER, "10.0.0.2")
    score.invalid_delivery(PEER, TOPIC)
    score.first_delivery(OTHER, TOPIC)
    score.remove_peer(PEER, 0.0)
    score.remove_peer(OTHER, 0.0)
    score.add_peer(PEER, "10.0.0.1")
    score.add_peer(OTHER, "10.0.0.2")
    assert score.score(PEER, 1.0) == pytest.approx(-10.0)
    assert score.score(OTHER, 1.0) == 0.0
    score.remove_peer(PEER, 1.0)
    score.refresh(1.0)
    score.refresh(1.0 + score.params.retain_score + 1)
    assert len(score) == 1  # the retained peer expired


def test_parameter_checks() -> None:
    with pytest.raises(ValueError, match="graylist"):
        ScoreThresholds(graylist_threshold=-1.0, publish_threshold=-50.0)
    with pytest.raises(ValueError, match="P4"):
        TopicScoreParams(invalid_message_deliveries_weight=1.0)
    with pytest.raises(ValueError, match="decay"):
        TopicScoreParams(first_message_deliveries_decay=1.0)
