"""MeshState (neonet.core.gossip): GossipSub v1.1 mesh, fan-out and gossip decisions.

Every test runs on both backends. Where a decision is random, the assertions hold for
any seed (sizes, membership rules) or the test pins the spec's deterministic part (the
D_score best peers and the D_out outbound peers survive an oversubscription prune).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from neonet.core.backend import Implementation
from neonet.core.gossip import (
    PROTOCOL_FLOODSUB,
    PROTOCOL_MESHSUB_V10,
    PROTOCOL_MESHSUB_V11,
    PROTOCOL_MESHSUB_V12,
    GossipParams,
    HeartbeatDecision,
    MeshStateInterface,
    SplitMix64,
)

TOPIC = "blocks"


def peer(number: int) -> bytes:
    """A peer ID of realistic length (38 bytes, like an Ed25519 identity multihash)."""
    return b"\x00\x24\x08\x01\x12\x20" + number.to_bytes(32, "big")


def make_state(
    backend: Implementation,
    count: int = 20,
    *,
    params: GossipParams | None = None,
    outbound: frozenset[int] = frozenset(),
    topic: str = TOPIC,
) -> MeshStateInterface:
    state = backend.mesh_state(params)
    for number in range(count):
        state.add_peer(peer(number), number in outbound, PROTOCOL_MESHSUB_V11)
        assert state.peer_subscribed(peer(number), topic) is True
    return state


# -- construction and peers ---------------------------------------------------------------


def test_defaults_are_the_spec_values(backend: Implementation) -> None:
    state = backend.mesh_state()
    params = state.params
    assert (params.d, params.d_lo, params.d_hi, params.d_lazy) == (6, 5, 12, 6)
    assert (params.d_score, params.d_out, params.gossip_factor) == (4, 2, 0.25)
    assert (params.fanout_ttl, params.prune_backoff) == (60.0, 60.0)
    assert params.unsubscribe_backoff == 10.0
    assert (params.opportunistic_graft_ticks, params.opportunistic_graft_peers) == (60, 2)
    custom = GossipParams(d=8, d_hi=16)
    assert backend.mesh_state(custom).params is custom


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"d_lo": 7}, "d_lo <= d"),
        ({"d": 13}, "d <= d_hi"),
        ({"d_score": 7}, "d_score"),
        ({"d_out": 4}, "d_out"),
        ({"d_out": 5}, "d_out"),
        ({"gossip_factor": 1.5}, "gossip_factor"),
        ({"fanout_ttl": 0.0}, "fanout_ttl"),
        ({"prune_backoff": -1.0}, "backoff"),
        ({"gossip_threshold": 1.0}, "threshold"),
        ({"publish_threshold": -1.0}, "threshold"),
        ({"opportunistic_graft_threshold": -1.0}, "opportunistic_graft_threshold"),
        ({"opportunistic_graft_ticks": 0}, "opportunistic_graft_ticks"),
        ({"max_peers": 0}, "max_peers"),
        ({"d": 2**32}, "out of range"),
        ({"fanout_ttl": math.inf}, "finite"),
        ({"gossip_factor": math.nan}, "finite"),
    ],
)
def test_bad_params_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GossipParams(**changes)


def test_params_types_are_checked() -> None:
    with pytest.raises(TypeError):
        GossipParams(d=6.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        GossipParams(fanout_ttl="60")  # type: ignore[arg-type]
    bootstrapper = GossipParams(d=0, d_lo=0, d_hi=0, d_out=0, d_score=0)  # the spec's PX node
    assert bootstrapper.d == 0


def test_add_peer_checks(backend: Implementation) -> None:
    state = backend.mesh_state(GossipParams(max_peers=2))
    state.add_peer(peer(1), False, PROTOCOL_MESHSUB_V10)
    with pytest.raises(ValueError, match="already"):
        state.add_peer(peer(1), False, PROTOCOL_MESHSUB_V11)
    with pytest.raises(ValueError, match="protocol"):
        state.add_peer(peer(2), False, "/meshsub/9.9.9")
    with pytest.raises(ValueError, match="peer ID"):
        state.add_peer(b"", False, PROTOCOL_MESHSUB_V12)
    with pytest.raises(ValueError, match="peer ID"):
        state.add_peer(b"x" * 129, False, PROTOCOL_MESHSUB_V12)
    state.add_peer(peer(2), True, PROTOCOL_FLOODSUB)
    with pytest.raises(ValueError, match="max_peers"):
        state.add_peer(peer(3), False, PROTOCOL_MESHSUB_V12)
    assert state.peer_count() == 2
    state.remove_peer(peer(1))
    state.add_peer(peer(3), False, PROTOCOL_MESHSUB_V12)
    assert state.peer_count() == 2


def test_unknown_peers_are_caller_errors(backend: Implementation) -> None:
    state = backend.mesh_state()
    for call in (
        lambda: state.remove_peer(peer(9)),
        lambda: state.peer_subscribed(peer(9), TOPIC),
        lambda: state.peer_unsubscribed(peer(9), TOPIC),
        lambda: state.handle_graft(peer(9), TOPIC, 0.0),
        lambda: state.handle_prune(peer(9), TOPIC, None, 0.0),
        lambda: state.peer_topics(peer(9)),
    ):
        with pytest.raises(ValueError, match="unknown peer"):
            call()
    state.set_score(peer(9), 5.0)  # scores of unknown peers are ignored
    state.set_scores({peer(9): 1.0})


def test_scores_must_not_be_nan(backend: Implementation) -> None:
    state = make_state(backend, 2)
    with pytest.raises(ValueError, match="NaN"):
        state.set_score(peer(0), math.nan)
    with pytest.raises(ValueError, match="NaN"):
        state.set_scores({peer(0): 1.0, peer(1): math.nan})


def test_results_are_the_callers_objects(backend: Implementation) -> None:
    state = backend.mesh_state()
    mine = peer(1)
    state.add_peer(mine, False, PROTOCOL_MESHSUB_V11)
    state.peer_subscribed(mine, TOPIC)
    assert state.topic_peers(TOPIC)[0] is mine
    assert state.join(TOPIC, 0.0, 1)[0] is mine


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_range(backend: Implementation, seed: int) -> None:
    state = make_state(backend, 3)
    with pytest.raises(ValueError, match="seed"):
        state.heartbeat(0.0, seed)
    with pytest.raises(ValueError, match="seed"):
        state.join(TOPIC, 0.0, seed)
    with pytest.raises(ValueError, match="seed"):
        state.publish_targets(TOPIC, None, False, 0.0, seed)


@pytest.mark.parametrize("now", [math.nan, math.inf])
def test_time_must_be_finite(backend: Implementation, now: float) -> None:
    state = make_state(backend, 3)
    for call in (
        lambda: state.heartbeat(now, 1),
        lambda: state.join(TOPIC, now, 1),
        lambda: state.leave(TOPIC, now),
        lambda: state.handle_graft(peer(0), TOPIC, now),
        lambda: state.handle_prune(peer(0), TOPIC, None, now),
        lambda: state.publish_targets(TOPIC, None, False, now, 1),
        lambda: state.publish_targets_many([(TOPIC, None)], False, now, 1),
    ):
        with pytest.raises(ValueError, match="now"):
            call()


# -- subscriptions and bounds ---------------------------------------------------------------


def test_subscriptions_and_topic_lifetime(backend: Implementation) -> None:
    state = make_state(backend, 3)
    assert state.topic_peers(TOPIC) == [peer(0), peer(1), peer(2)]
    assert state.peer_subscribed(peer(0), TOPIC) is True  # again: no change
    state.peer_subscribed(peer(0), "other")
    assert state.peer_topics(peer(0)) == [TOPIC, "other"]
    assert state.topic_count() == 2
    state.peer_unsubscribed(peer(0), "other")
    state.peer_unsubscribed(peer(0), "never")  # not subscribed: nothing to do
    assert state.topic_count() == 1  # nobody left on "other": forgotten
    state.remove_peer(peer(1))
    assert state.topic_peers(TOPIC) == [peer(0), peer(2)]


def test_remote_subscriptions_are_bounded(backend: Implementation) -> None:
    params = GossipParams(max_topics=3, max_topics_per_peer=2, max_peers_per_topic=2)
    state = backend.mesh_state(params)
    for number in range(3):
        state.add_peer(peer(number), False, PROTOCOL_MESHSUB_V11)
    assert state.peer_subscribed(peer(0), "a") is True
    assert state.peer_subscribed(peer(1), "a") is True
    assert state.peer_subscribed(peer(2), "a") is False  # max_peers_per_topic
    assert state.peer_subscribed(peer(0), "b") is True
    assert state.peer_subscribed(peer(0), "c") is False  # max_topics_per_peer
    assert state.peer_subscribed(peer(1), "c") is True
    assert state.peer_subscribed(peer(2), "d") is False  # max_topics
    assert state.peer_subscribed(peer(2), "é" * 600) is False  # longer than 1024 bytes
    with pytest.raises(ValueError, match="max_topics"):
        state.join("d", 0.0, 1)
    with pytest.raises(ValueError, match="max_topics"):
        state.publish_targets("d", None, False, 0.0, 1)
    assert state.publish_targets("d", None, True, 0.0, 1) == []  # flood needs no state
    with pytest.raises(ValueError, match="topic longer"):
        state.join("x" * 1025, 0.0, 1)


# -- JOIN / LEAVE --------------------------------------------------------------------------


def test_join_grafts_d_subscribers(backend: Implementation) -> None:
    state = make_state(backend, 20)
    chosen = state.join(TOPIC, 0.0, 7)
    assert len(chosen) == 6
    assert len(set(chosen)) == 6
    assert state.mesh_peers(TOPIC) == sorted(chosen)
    assert state.joined_topics() == [TOPIC]
    assert state.join(TOPIC, 1.0, 8) == []  # already joined


def test_join_moves_the_fanout_into_the_mesh(backend: Implementation) -> None:
    state = make_state(backend, 20)
    fanout = state.publish_targets(TOPIC, None, False, 0.0, 3)
    assert len(fanout) == 6
    assert state.fanout_peers(TOPIC) == fanout
    chosen = state.join(TOPIC, 1.0, 4)
    assert sorted(chosen) == fanout
    assert state.fanout_peers(TOPIC) == []
    assert state.mesh_peers(TOPIC) == fanout


def test_join_skips_floodsub_explicit_negative_and_backed_off_peers(
    backend: Implementation,
) -> None:
    state = backend.mesh_state()
    kinds = {
        0: (PROTOCOL_FLOODSUB, False),
        1: (PROTOCOL_MESHSUB_V11, True),
        2: (PROTOCOL_MESHSUB_V11, False),
        3: (PROTOCOL_MESHSUB_V11, False),
        4: (PROTOCOL_MESHSUB_V12, False),
    }
    for number, (protocol, explicit) in kinds.items():
        state.add_peer(peer(number), False, protocol, explicit)
        state.peer_subscribed(peer(number), TOPIC)
    state.set_score(peer(2), -0.5)
    state.join(TOPIC, 0.0, 1)
    state.handle_prune(peer(3), TOPIC, 30.0, 0.0)  # backs peer 3 off for 30 s
    state.leave(TOPIC, 0.0)
    assert state.join(TOPIC, 20.0, 1) == [peer(4)]
    assert state.join(TOPIC, 20.0, 1) == []


def test_leave_prunes_the_mesh_with_the_unsubscribe_backoff(backend: Implementation) -> None:
    state = make_state(backend, 8)
    chosen = state.join(TOPIC, 0.0, 1)
    prunes = state.leave(TOPIC, 5.0)
    assert prunes == [(member, TOPIC, 10.0) for member in sorted(chosen)]
    assert state.joined_topics() == []
    assert state.mesh_peers(TOPIC) == []
    assert all(state.backoff_until(member, TOPIC) == 15.0 for member in chosen)
    assert state.leave(TOPIC, 6.0) == []
    assert state.leave("unknown", 6.0) == []


# -- GRAFT / PRUNE -------------------------------------------------------------------------


def test_graft_verdicts(backend: Implementation) -> None:
    state = make_state(backend, 13)
    state.add_peer(peer(20), False, PROTOCOL_FLOODSUB)
    state.add_peer(peer(21), False, PROTOCOL_MESHSUB_V11, True)
    assert state.handle_graft(peer(0), TOPIC, 0.0) == "ignored"  # not joined
    state.join(TOPIC, 0.0, 1)
    members = state.mesh_peers(TOPIC)
    outsiders = [peer(n) for n in range(13) if peer(n) not in members]
    assert state.handle_graft(members[0], TOPIC, 0.0) == "ignored"  # already in
    assert state.handle_graft(peer(20), TOPIC, 0.0) == "ignored"  # floodsub
    assert state.handle_graft(peer(21), TOPIC, 0.0) == "refused_explicit"
    state.set_score(outsiders[0], -1.0)
    assert state.handle_graft(outsiders[0], TOPIC, 1.0) == "refused_score"
    assert state.backoff_until(outsiders[0], TOPIC) == 61.0
    assert state.handle_graft(outsiders[0], TOPIC, 2.0) == "refused_backoff"
    assert state.backoff_until(outsiders[0], TOPIC) == 62.0  # extended
    for other in outsiders[1:]:
        assert state.handle_graft(other, TOPIC, 3.0) == "accepted"
    assert len(state.mesh_peers(TOPIC)) == 12  # D_hi: full for inbound peers
    state.add_peer(peer(30), False, PROTOCOL_MESHSUB_V11)
    assert state.handle_graft(peer(30), TOPIC, 4.0) == "refused_full"
    assert state.backoff_until(peer(30), TOPIC) == 64.0
    state.add_peer(peer(31), True, PROTOCOL_MESHSUB_V11)
    assert state.handle_graft(peer(31), TOPIC, 4.0) == "accepted"  # outbound
    assert len(state.mesh_peers(TOPIC)) == 13


def test_graft_from_an_unsubscribed_peer_subscribes_it(backend: Implementation) -> None:
    state = make_state(backend, 1)
    state.join(TOPIC, 0.0, 1)
    state.add_peer(peer(5), False, PROTOCOL_MESHSUB_V11)
    assert state.handle_graft(peer(5), TOPIC, 0.0) == "accepted"
    assert state.peer_topics(peer(5)) == [TOPIC]
    assert peer(5) in state.topic_peers(TOPIC)


def test_prune_leaves_the_mesh_and_backs_off(backend: Implementation) -> None:
    state = make_state(backend, 6)
    state.join(TOPIC, 0.0, 1)
    member = state.mesh_peers(TOPIC)[0]
    assert state.handle_prune(member, TOPIC, None, 10.0) is True
    assert member not in state.mesh_peers(TOPIC)
    assert state.backoff_until(member, TOPIC) == 70.0
    assert state.handle_prune(member, TOPIC, 100.0, 11.0) is False
    assert state.backoff_until(member, TOPIC) == 111.0
    assert state.handle_prune(member, TOPIC, 1.0, 12.0) is False
    assert state.backoff_until(member, TOPIC) == 111.0  # backoffs only grow
    assert state.handle_prune(member, "not-joined", None, 12.0) is False
    assert state.backoff_until(member, "not-joined") is None
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="backoff"):
            state.handle_prune(member, TOPIC, bad, 13.0)


def test_backoffs_are_bounded(backend: Implementation) -> None:
    state = make_state(backend, 4, params=GossipParams(max_backoffs=2))
    state.join(TOPIC, 0.0, 1)
    state.handle_prune(peer(0), TOPIC, 30.0, 0.0)
    state.handle_prune(peer(1), TOPIC, 10.0, 0.0)
    state.handle_prune(peer(2), TOPIC, 20.0, 0.0)  # full: the one ending first goes
    assert [state.backoff_until(peer(n), TOPIC) for n in range(3)] == [30.0, None, 20.0]
    state.handle_prune(peer(3), TOPIC, 5.0, 25.0)  # peer 2's ended (+ slack): forgotten
    assert [state.backoff_until(peer(n), TOPIC) for n in range(4)] == [30.0, None, None, 30.0]


def test_backoffs_outlive_the_connection(backend: Implementation) -> None:
    state = make_state(backend, 3)
    state.join(TOPIC, 0.0, 1)
    state.handle_prune(peer(0), TOPIC, None, 0.0)
    state.remove_peer(peer(0))
    state.add_peer(peer(0), False, PROTOCOL_MESHSUB_V11)
    state.peer_subscribed(peer(0), TOPIC)
    assert state.handle_graft(peer(0), TOPIC, 30.0) == "refused_backoff"


# -- heartbeat: mesh maintenance -----------------------------------------------------------


def test_heartbeat_fills_an_undersubscribed_mesh_to_d(backend: Implementation) -> None:
    state = make_state(backend, 3)
    assert len(state.join(TOPIC, 0.0, 1)) == 3
    for number in range(3, 15):
        state.add_peer(peer(number), False, PROTOCOL_MESHSUB_V11)
        state.peer_subscribed(peer(number), TOPIC)
    decision = state.heartbeat(1.0, 2)
    assert isinstance(decision, HeartbeatDecision)
    assert len(decision.grafts) == 3
    assert all(topic == TOPIC for _, topic in decision.grafts)
    assert len(state.mesh_peers(TOPIC)) == 6
    assert decision.prunes == []
    assert state.heartbeat(2.0, 3).grafts == []  # D_lo <= 6: stable


def test_heartbeat_prunes_negative_peers_and_does_not_regraft_them(
    backend: Implementation,
) -> None:
    state = make_state(backend, 6)
    state.join(TOPIC, 0.0, 1)
    state.set_score(peer(2), -5.0)
    decision = state.heartbeat(1.0, 1)
    assert decision.prunes == [(peer(2), TOPIC, 60.0)]
    assert peer(2) not in state.mesh_peers(TOPIC)
    assert len(state.mesh_peers(TOPIC)) == 5  # D_lo: no graft needed, none possible
    assert state.backoff_until(peer(2), TOPIC) == 61.0


def crowded_mesh(backend: Implementation, seed: int) -> MeshStateInterface:
    """A mesh of 14: peers 0..11 (inbound) fill it to D_hi, outbound 12 and 13 go beyond."""
    state = backend.mesh_state()
    assert state.join(TOPIC, 0.0, seed) == []
    for number in range(14):
        state.add_peer(peer(number), number >= 12, PROTOCOL_MESHSUB_V11)
        assert state.handle_graft(peer(number), TOPIC, 0.0) == "accepted"
    assert len(state.mesh_peers(TOPIC)) == 14
    return state


def test_oversubscription_keeps_the_best_scores_and_the_outbound_quota(
    backend: Implementation,
) -> None:
    for seed in range(20):
        state = crowded_mesh(backend, seed)
        state.set_scores({peer(n): (10.0 if n < 4 else 1.0) for n in range(14)})
        decision = state.heartbeat(1.0, seed)
        # D_score=4 best by score, then D_out=2 outbound replace the random picks.
        assert state.mesh_peers(TOPIC) == [peer(n) for n in (0, 1, 2, 3, 12, 13)]
        assert sorted(p for p, _, _ in decision.prunes) == [peer(n) for n in range(4, 12)]
        assert {(topic, backoff) for _, topic, backoff in decision.prunes} == {(TOPIC, 60.0)}
        assert decision.grafts == []


def test_oversubscription_is_random_among_equal_scores(backend: Implementation) -> None:
    kept = set()
    for seed in range(12):
        state = crowded_mesh(backend, 0)
        state.heartbeat(1.0, seed)
        survivors = state.mesh_peers(TOPIC)
        assert len(survivors) == 6
        assert {peer(12), peer(13)} <= set(survivors)
        kept.add(tuple(survivors))
    assert len(kept) > 1


def test_outbound_quota_grafts_outbound_peers(backend: Implementation) -> None:
    state = make_state(backend, 6)  # a mesh of six inbound peers
    state.join(TOPIC, 0.0, 0)
    for number in (10, 11, 12):
        state.add_peer(peer(number), True, PROTOCOL_MESHSUB_V11)
        state.peer_subscribed(peer(number), TOPIC)
    decision = state.heartbeat(1.0, 5)
    assert len(decision.grafts) == 2
    assert {p for p, _ in decision.grafts} <= {peer(10), peer(11), peer(12)}
    assert len(state.mesh_peers(TOPIC)) == 8


def test_opportunistic_grafting(backend: Implementation) -> None:
    params = GossipParams(opportunistic_graft_ticks=3)
    state = make_state(backend, 10, params=params)
    state.join(TOPIC, 0.0, 1)
    members = state.mesh_peers(TOPIC)
    others = [peer(n) for n in range(10) if peer(n) not in members]
    state.set_scores({other: 5.0 for other in others})  # mesh median 0 < threshold 1
    assert state.heartbeat(1.0, 1).grafts == []
    assert state.heartbeat(2.0, 1).grafts == []
    decision = state.heartbeat(3.0, 1)  # every third heartbeat
    assert len(decision.grafts) == 2
    assert {p for p, _ in decision.grafts} <= set(others)
    state.set_scores({member: 2.0 for member in members})  # median now above threshold
    assert state.heartbeat(4.0, 1).grafts == []
    assert state.heartbeat(5.0, 1).grafts == []
    assert state.heartbeat(6.0, 1).grafts == []


def test_backoff_slack_delays_regrafting(backend: Implementation) -> None:
    state = make_state(backend, 1)
    state.join(TOPIC, 0.0, 1)
    state.handle_prune(peer(0), TOPIC, 10.0, 0.0)
    assert state.heartbeat(10.5, 1).grafts == []  # backoff over, slack (1 s) not
    assert state.handle_graft(peer(0), TOPIC, 10.5) == "accepted"  # remote may regraft
    state.handle_prune(peer(0), TOPIC, 10.0, 11.0)
    assert state.heartbeat(21.5, 1).grafts == []
    assert state.heartbeat(22.0, 1).grafts == [(peer(0), TOPIC)]
    assert state.backoff_until(peer(0), TOPIC) is None  # forgotten by the heartbeat


# -- heartbeat: fan-out and gossip ---------------------------------------------------------


def test_fanout_is_kept_topped_up_and_expires(backend: Implementation) -> None:
    state = make_state(backend, 2)
    assert state.publish_targets(TOPIC, None, False, 0.0, 1) == [peer(0), peer(1)]
    for number in range(2, 10):
        state.add_peer(peer(number), False, PROTOCOL_MESHSUB_V11)
        state.peer_subscribed(peer(number), TOPIC)
    assert state.publish_targets(TOPIC, None, False, 1.0, 1) == [peer(0), peer(1)]
    decision = state.heartbeat(2.0, 9)
    assert len(state.fanout_peers(TOPIC)) == 6
    assert decision.fanout_expired == []
    state.set_score(peer(0), -100.0)  # below publish_threshold
    state.heartbeat(3.0, 9)
    assert peer(0) not in state.fanout_peers(TOPIC)
    assert len(state.fanout_peers(TOPIC)) == 6
    assert state.heartbeat(61.0, 1).fanout_expired == []  # 60 s after the last publish
    assert state.heartbeat(61.5, 1).fanout_expired == [TOPIC]
    assert state.fanout_peers(TOPIC) == []


def test_unsubscribed_peers_leave_mesh_and_fanout(backend: Implementation) -> None:
    state = make_state(backend, 8)
    state.peer_subscribed(peer(0), "other")
    state.join(TOPIC, 0.0, 1)
    state.publish_targets("other", None, False, 0.0, 1)
    member = state.mesh_peers(TOPIC)[0]
    state.peer_unsubscribed(member, TOPIC)
    assert member not in state.mesh_peers(TOPIC)
    state.peer_unsubscribed(peer(0), "other")
    assert state.fanout_peers("other") == []
    assert state.topic_count() == 2  # "other" lives on as fan-out state


def test_gossip_targets_follow_the_adaptive_rule(backend: Implementation) -> None:
    state = make_state(backend, 30)
    state.join(TOPIC, 0.0, 1)
    decision = state.heartbeat(1.0, 1)
    mesh = set(state.mesh_peers(TOPIC))
    targets = decision.gossip[TOPIC]
    assert len(targets) == 6  # max(D_lazy=6, 0.25 * 24 candidates)
    assert not set(targets) & mesh
    assert len(set(targets)) == 6
    state = make_state(backend, 66)
    state.join(TOPIC, 0.0, 1)
    assert len(state.heartbeat(1.0, 1).gossip[TOPIC]) == 15  # 0.25 * 60


def test_gossip_skips_low_scores_floodsub_explicit_mesh_and_fanout(
    backend: Implementation,
) -> None:
    state = make_state(backend, 4)
    state.add_peer(peer(10), False, PROTOCOL_FLOODSUB)
    state.add_peer(peer(11), False, PROTOCOL_MESHSUB_V11, True)
    state.add_peer(peer(12), False, PROTOCOL_MESHSUB_V11)
    for number in (10, 11, 12):
        state.peer_subscribed(peer(number), TOPIC)
    state.set_score(peer(12), -11.0)  # below gossip_threshold (-10)
    state.join(TOPIC, 0.0, 1)  # mesh: peers 0..3 (peer 12 scores below 0)
    assert state.mesh_peers(TOPIC) == [peer(n) for n in range(4)]
    fans = [peer(n) for n in range(20, 28)]
    for fan in fans:
        state.add_peer(fan, False, PROTOCOL_MESHSUB_V11)
        state.peer_subscribed(fan, "fan")
    fanout = state.publish_targets("fan", None, False, 0.0, 1)
    assert len(fanout) == 6
    decision = state.heartbeat(1.0, 1)
    assert TOPIC not in decision.gossip  # every candidate excluded
    assert sorted(decision.gossip["fan"]) == sorted(set(fans) - set(fanout))


# -- publishing ----------------------------------------------------------------------------


def test_publish_uses_the_mesh_and_never_the_source(backend: Implementation) -> None:
    state = make_state(backend, 10)
    state.join(TOPIC, 0.0, 1)
    mesh = state.mesh_peers(TOPIC)
    assert state.publish_targets(TOPIC, None, False, 1.0, 1) == mesh
    assert state.publish_targets(TOPIC, mesh[2], False, 1.0, 1) == mesh[:2] + mesh[3:]
    assert state.publish_targets(TOPIC, b"stranger", False, 1.0, 1) == mesh


def test_publish_adds_floodsub_and_explicit_subscribers(backend: Implementation) -> None:
    state = make_state(backend, 10)
    state.add_peer(b"\x00", False, PROTOCOL_FLOODSUB)  # sorts first
    state.add_peer(b"\xff", False, PROTOCOL_MESHSUB_V11, True)  # sorts last
    state.add_peer(b"\x7f", False, PROTOCOL_FLOODSUB)
    for extra in (b"\x00", b"\xff", b"\x7f"):
        state.peer_subscribed(extra, TOPIC)
    state.set_score(b"\x7f", -60.0)  # floodsub below publish_threshold: skipped
    state.set_score(b"\xff", -60.0)  # explicit peers get messages regardless
    state.join(TOPIC, 0.0, 1)
    mesh = state.mesh_peers(TOPIC)
    assert b"\x00" not in mesh
    assert state.publish_targets(TOPIC, None, False, 1.0, 1) == [b"\x00", *mesh, b"\xff"]
    assert state.publish_targets(TOPIC, b"\x00", False, 1.0, 1) == [*mesh, b"\xff"]


def test_flood_publish_reaches_every_subscriber_above_the_threshold(
    backend: Implementation,
) -> None:
    state = make_state(backend, 10)
    state.add_peer(peer(20), False, PROTOCOL_FLOODSUB)
    state.add_peer(peer(21), False, PROTOCOL_MESHSUB_V11, True)
    state.peer_subscribed(peer(20), TOPIC)
    state.peer_subscribed(peer(21), TOPIC)
    state.set_scores({peer(3): -50.0, peer(4): -50.5, peer(21): -99.0})
    expected = [peer(n) for n in range(10) if n not in (4, 7)] + [peer(20), peer(21)]
    assert state.publish_targets(TOPIC, peer(7), True, 0.0, 1) == expected
    assert state.fanout_peers(TOPIC) == []  # flood publishing keeps no fan-out
    assert state.publish_targets("nobody", None, True, 0.0, 1) == []
    assert state.topic_count() == 1


def test_batch_publish_equals_single_calls_without_randomness(backend: Implementation) -> None:
    state = make_state(backend, 10)
    state.peer_subscribed(peer(1), "second")
    state.join(TOPIC, 0.0, 1)
    state.join("second", 0.0, 1)
    messages: list[tuple[str, bytes | None]] = [
        (TOPIC, None),
        ("second", peer(1)),
        (TOPIC, peer(3)),
        ("none", None),
    ]
    for flood in (False, True):
        batch = state.publish_targets_many(messages, flood, 1.0, 5)
        assert batch == [state.publish_targets(t, s, flood, 1.0, 9) for t, s in messages]
    assert state.publish_targets_many(iter([]), False, 1.0, 1) == []


def test_flat_batch_publish_is_the_batch_back_to_back(backend: Implementation) -> None:
    state = make_state(backend, 10)
    state.peer_subscribed(peer(1), "second")
    state.join(TOPIC, 0.0, 1)
    messages: list[tuple[str, bytes | None]] = [
        (TOPIC, None),
        ("second", peer(1)),  # not joined: a fan-out drawn from the seed's stream
        (TOPIC, peer(3)),
        ("none", None),
    ]
    for flood in (False, True):
        lists = state.publish_targets_many(messages, flood, 1.0, 5)
        peers, counts = state.publish_targets_flat(iter(messages), flood, 1.0, 5)
        assert peers == [target for targets in lists for target in targets]
        assert counts == [len(targets) for targets in lists]
        assert counts[3] == 0
    assert state.publish_targets_flat([], False, 1.0, 1) == ([], [])
    # Malformed messages: TypeError on both backends, and nothing is published (no
    # fan-out chosen for the good message before the bad one).
    state.peer_subscribed(peer(2), "third")
    for bad in ([(TOPIC,)], [None]):
        with pytest.raises(TypeError):
            state.publish_targets_flat([("third", None), *bad], False, 1.0, 1)
        assert state.fanout_peers("third") == []
    assert state.publish_targets_flat([("third", None)], False, 1.0, 1) == ([peer(2)], [1])
    with pytest.raises(ValueError, match="now"):
        state.publish_targets_flat([(TOPIC, None)], False, math.nan, 1)


def test_batch_publish_draws_from_one_stream(backend: Implementation) -> None:
    def fresh() -> MeshStateInterface:
        state = make_state(backend, 30)
        for number in range(30):
            state.peer_subscribed(peer(number), "b")
        return state

    messages: list[tuple[str, bytes | None]] = [(TOPIC, None), ("b", None)]
    first = fresh().publish_targets_many(messages, False, 0.0, 77)
    assert first == fresh().publish_targets_many(messages, False, 0.0, 77)
    rng = SplitMix64(77)  # topic TOPIC draws 6 times, then "b" continues the stream
    candidates = [peer(n) for n in range(30)]
    expected_first = sorted(rng.sample(list(candidates), 6))
    expected_second = sorted(rng.sample(list(candidates), 6))
    assert first == [expected_first, expected_second]


def test_decisions_depend_only_on_state_time_and_seed(backend: Implementation) -> None:
    def run(seed: int) -> list[HeartbeatDecision]:
        state = make_state(backend, 40, outbound=frozenset(range(0, 40, 5)))
        state.join(TOPIC, 0.0, seed)
        decisions = []
        for tick in range(1, 8):
            for number in range(tick * 3, 40, 7):
                state.handle_graft(peer(number), TOPIC, float(tick))
            decisions.append(state.heartbeat(float(tick), seed + tick))
        return decisions

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_heartbeat_decision_is_a_plain_value() -> None:
    decision = HeartbeatDecision([], [], {}, [])
    assert dataclasses.asdict(decision) == {
        "grafts": [],
        "prunes": [],
        "gossip": {},
        "fanout_expired": [],
    }


# -- the shared random source --------------------------------------------------------------


def test_splitmix64_reference_outputs() -> None:
    zero = SplitMix64(0)
    assert [zero.next_u64() for _ in range(3)] == [
        0xE220A8397B1DCDAF,
        0x6E789E6AA1B965F4,
        0x06C45D188009454F,
    ]
    other = SplitMix64(1234567)
    assert [other.next_u64() for _ in range(2)] == [6457827717110365317, 3203168211198807973]


def test_sample_is_a_partial_fisher_yates() -> None:
    rng = SplitMix64(42)
    items = list(range(20))
    chosen = rng.sample(items, 7)
    assert chosen is items
    assert len(chosen) == 7
    assert len(set(chosen)) == 7
    replay = SplitMix64(42)
    expected = list(range(20))
    for index in range(7):
        other = index + (replay.next_u64() * (20 - index) >> 64)
        expected[index], expected[other] = expected[other], expected[index]
    assert chosen == expected[:7]
    assert sorted(SplitMix64(1).sample([3, 1, 2], 10)) == [1, 2, 3]
    with pytest.raises(ValueError, match="seed"):
        SplitMix64(-1)
