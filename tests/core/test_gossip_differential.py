"""Differential tests: MeshState on both backends fed the same operation sequences.

Hypothesis draws sequences of peer, subscription, score, JOIN/LEAVE, GRAFT/PRUNE,
heartbeat and publish operations with a clock that moves forward in random steps, under
parameter sets small enough that over- and under-subscription, backoff expiry, fan-out
expiry and every bound are hit often. After every operation both backends must have
returned equal results (or raised the same exception type) and must show the same state.
Also checks that both backends expose the same signatures.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from neonet.core import backend as backend_module
from neonet.core.gossip import (
    PROTOCOL_FLOODSUB,
    PROTOCOL_MESHSUB_V10,
    PROTOCOL_MESHSUB_V11,
    PROTOCOL_MESHSUB_V12,
    GossipParams,
)

PEERS = [b"\x00\x24" + bytes([n]) * 6 for n in range(12)] + [b"\x01", b"\xff" * 9]
TOPICS = ["a", "b", "c", "ünï", "d"]
PROTOCOLS = [PROTOCOL_MESHSUB_V11, PROTOCOL_MESHSUB_V12, PROTOCOL_MESHSUB_V10, PROTOCOL_FLOODSUB]
SCORES = [0.0, -0.0, 1.0, 2.5, 10.0, -0.5, -10.0, -10.5, -50.0, -60.0, 0.5, float("inf")]

PARAMS = [
    GossipParams(),
    GossipParams(
        d=3,
        d_lo=2,
        d_hi=4,
        d_lazy=2,
        d_score=1,
        d_out=1,
        gossip_factor=0.5,
        fanout_ttl=20.0,
        prune_backoff=15.0,
        unsubscribe_backoff=5.0,
        backoff_slack=2.0,
        opportunistic_graft_ticks=3,
        opportunistic_graft_peers=1,
        opportunistic_graft_threshold=2.0,
        max_peers=10,
        max_topics=4,
        max_topics_per_peer=3,
        max_peers_per_topic=7,
        max_backoffs=5,
    ),
    GossipParams(
        d=4,
        d_lo=3,
        d_hi=5,
        d_lazy=3,
        d_score=2,
        d_out=2,
        gossip_factor=0.0,
        fanout_ttl=5.0,
        prune_backoff=3.0,
        unsubscribe_backoff=0.0,
        backoff_slack=0.0,
        opportunistic_graft_ticks=1,
        opportunistic_graft_peers=3,
        opportunistic_graft_threshold=5.0,
        gossip_threshold=-0.5,
        publish_threshold=-0.5,
    ),
    GossipParams(
        d=2,
        d_lo=1,
        d_hi=3,
        d_lazy=1,
        d_score=1,
        d_out=0,
        opportunistic_graft_ticks=2,
        opportunistic_graft_peers=2,
        opportunistic_graft_threshold=3.0,
        max_backoffs=3,
    ),
]

peer_index = st.integers(0, len(PEERS) - 1)
topic_index = st.integers(0, len(TOPICS) - 1)
seeds = st.integers(0, 2**64 - 1)
source = st.one_of(st.none(), peer_index)

ELAPSED = [0.0, 0.0, 0.5, 1.0, 1.0, 3.0, 17.0]
PEER_SETUP = st.tuples(
    st.booleans(),
    st.sampled_from([0, 0, 1, 2, 3]),  # mostly /meshsub/1.1.0, some floodsub
    st.integers(0, 9).map(lambda n: n == 0),  # one peer in ten is explicit
    st.sets(st.integers(0, len(TOPICS) - 1), min_size=1, max_size=3),
)

OPERATION = st.one_of(
    st.tuples(st.just("heartbeat"), seeds),
    st.tuples(st.just("graft"), peer_index, topic_index),
    st.tuples(st.just("join"), topic_index, seeds),
    st.tuples(
        st.just("add_peer"),
        peer_index,
        st.booleans(),
        st.integers(0, len(PROTOCOLS) - 1),
        st.booleans() | st.just(False),
    ),
    st.tuples(st.just("remove_peer"), peer_index),
    st.tuples(st.just("subscribe"), peer_index, topic_index),
    st.tuples(st.just("subscribe"), peer_index, topic_index),
    st.tuples(st.just("unsubscribe"), peer_index, topic_index),
    st.tuples(st.just("score"), peer_index, st.sampled_from(SCORES)),
    st.tuples(
        st.just("scores"),
        st.dictionaries(peer_index, st.sampled_from(SCORES), max_size=4),
    ),
    st.tuples(st.just("join"), topic_index, seeds),
    st.tuples(st.just("leave"), topic_index),
    st.tuples(st.just("graft"), peer_index, topic_index),
    st.tuples(st.just("graft"), peer_index, topic_index),
    st.tuples(st.just("prune"), peer_index, topic_index, st.sampled_from([None, 0.0, 2.0, 30.0])),
    st.tuples(st.just("heartbeat"), seeds),
    st.tuples(st.just("heartbeat"), seeds),
    st.tuples(st.just("publish"), topic_index, source, st.booleans(), seeds),
    st.tuples(
        st.just("publish_many"),
        st.lists(st.tuples(topic_index, source), max_size=5),
        st.booleans(),
        seeds,
    ),
    st.tuples(
        st.just("publish_flat"),
        st.lists(st.tuples(topic_index, source), max_size=5),
        st.booleans(),
        seeds,
    ),
)


def _outcome(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return ("ok", call())
    except Exception as error:  # the exception type must match across backends
        return ("error", type(error))


def _apply(state: Any, operation: tuple[Any, ...], now: float) -> tuple[str, object]:
    kind, *arguments = operation
    if kind == "add_peer":
        number, outbound, protocol, explicit = arguments
        return _outcome(
            lambda: state.add_peer(PEERS[number], outbound, PROTOCOLS[protocol], explicit)
        )
    if kind == "remove_peer":
        return _outcome(lambda: state.remove_peer(PEERS[arguments[0]]))
    if kind == "subscribe":
        return _outcome(lambda: state.peer_subscribed(PEERS[arguments[0]], TOPICS[arguments[1]]))
    if kind == "unsubscribe":
        return _outcome(lambda: state.peer_unsubscribed(PEERS[arguments[0]], TOPICS[arguments[1]]))
    if kind == "score":
        return _outcome(lambda: state.set_score(PEERS[arguments[0]], arguments[1]))
    if kind == "scores":
        scores = {PEERS[number]: score for number, score in arguments[0].items()}
        return _outcome(lambda: state.set_scores(scores))
    if kind == "join":
        return _outcome(lambda: state.join(TOPICS[arguments[0]], now, arguments[1]))
    if kind == "leave":
        return _outcome(lambda: state.leave(TOPICS[arguments[0]], now))
    if kind == "graft":
        return _outcome(lambda: state.handle_graft(PEERS[arguments[0]], TOPICS[arguments[1]], now))
    if kind == "prune":
        number, topic, backoff = arguments
        return _outcome(lambda: state.handle_prune(PEERS[number], TOPICS[topic], backoff, now))
    if kind == "heartbeat":
        return _outcome(lambda: state.heartbeat(now, arguments[0]))
    if kind == "publish":
        topic, origin, flood, seed = arguments
        sender = None if origin is None else PEERS[origin]
        return _outcome(lambda: state.publish_targets(TOPICS[topic], sender, flood, now, seed))
    messages = [
        (TOPICS[topic], None if origin is None else PEERS[origin]) for topic, origin in arguments[0]
    ]
    if kind == "publish_flat":
        return _outcome(
            lambda: state.publish_targets_flat(messages, arguments[1], now, arguments[2])
        )
    return _outcome(lambda: state.publish_targets_many(messages, arguments[1], now, arguments[2]))


def _snapshot(state: Any) -> object:
    per_topic = [(state.mesh_peers(t), state.fanout_peers(t), state.topic_peers(t)) for t in TOPICS]
    backoffs = [state.backoff_until(p, t) for p in PEERS for t in TOPICS]
    peer_topics = [_outcome(lambda p=p: state.peer_topics(p)) for p in PEERS]
    return (
        per_topic,
        backoffs,
        peer_topics,
        state.joined_topics(),
        state.peer_count(),
        state.topic_count(),
    )


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    params=st.sampled_from(PARAMS),
    setup=st.lists(PEER_SETUP, min_size=len(PEERS), max_size=len(PEERS)),
    joined=st.sets(topic_index, max_size=3),
    seed=seeds,
    steps=st.lists(st.tuples(OPERATION, st.sampled_from(ELAPSED)), min_size=5, max_size=60),
)
def test_mesh_state_backends_agree(
    params: GossipParams,
    setup: list[tuple[Any, ...]],
    joined: set[int],
    seed: int,
    steps: list[tuple[tuple[Any, ...], float]],
) -> None:
    pure = backend_module.implementation("pure").mesh_state(params)
    native = backend_module.implementation("native").mesh_state(params)
    # Most peers connect and subscribe first, so the random steps act on a live state.
    prefix: list[tuple[Any, ...]] = []
    for number, (outbound, protocol, explicit, topics) in enumerate(setup):
        prefix.append(("add_peer", number, outbound, protocol, explicit))
        prefix.extend(("subscribe", number, topic) for topic in sorted(topics))
    prefix.extend(("join", topic, seed) for topic in sorted(joined))
    now = 0.0
    for operation, elapsed in [(operation, 0.0) for operation in prefix] + steps:
        now += elapsed
        expected = _apply(pure, operation, now)
        assert _apply(native, operation, now) == expected, operation
        assert _snapshot(native) == _snapshot(pure), operation
        _record(operation[0], expected)


def _record(kind: str, outcome: tuple[str, object]) -> None:
    """Statistics (pytest --hypothesis-show-statistics): what the sequences reached."""
    status, value = outcome
    if status == "error":
        event(f"{kind}: {getattr(value, '__name__', value)}")
    elif kind == "heartbeat":
        for part in ("grafts", "prunes", "gossip", "fanout_expired"):
            if getattr(value, part):
                event(f"heartbeat with {part}")
    elif kind == "graft":
        event(f"graft {value}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=seeds, subscribers=st.integers(0, 40), ticks=st.integers(1, 30))
def test_busy_meshes_agree(seed: int, subscribers: int, ticks: int) -> None:
    """Many peers, all topics joined, churn each tick: long runs with real-size meshes."""
    states = [backend_module.implementation(n).mesh_state() for n in ("pure", "native")]
    outcomes: list[list[object]] = [[], []]
    for state, log in zip(states, outcomes, strict=True):
        for number in range(subscribers):
            identity = number.to_bytes(4, "big") * 9
            state.add_peer(identity, number % 4 == 0, PROTOCOL_MESHSUB_V11)
            for topic in TOPICS[: 1 + number % len(TOPICS)]:
                state.peer_subscribed(identity, topic)
        for topic in TOPICS[:3]:
            log.append(state.join(topic, 0.0, seed))
        for tick in range(1, ticks + 1):
            mixed = (seed + tick * 7919) % (2**64)
            for number in range(tick % 5, subscribers, 5):
                identity = number.to_bytes(4, "big") * 9
                state.set_score(identity, float((number * tick) % 13 - 3))
                log.append(state.handle_graft(identity, TOPICS[tick % 4], float(tick)))
            log.append(state.heartbeat(float(tick), mixed))
            messages = [(topic, None) for topic in TOPICS]
            lists = state.publish_targets_many(messages, tick % 2 == 0, float(tick), mixed)
            log.append(lists)
            # The flat form is the same answer back to back (same state, same seed).
            peers, counts = state.publish_targets_flat(messages, tick % 2 == 0, float(tick), mixed)
            assert peers == [peer for targets in lists for peer in targets]
            assert counts == [len(targets) for targets in lists]
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("name", ["SeenCache", "MessageCache", "MeshState"])
def test_both_backends_expose_the_same_methods(name: str) -> None:
    pure_class = getattr(backend_module.implementation("pure"), _field(name))
    native_class = getattr(backend_module.implementation("native"), _field(name))
    pure_names = {n for n in dir(pure_class) if not n.startswith("_")}
    native_names = {n for n in dir(native_class) if not n.startswith("_")}
    assert pure_names == native_names
    for method in sorted(pure_names):
        pure_member = getattr(pure_class, method)
        if not callable(pure_member):
            continue
        expected = _parameters(pure_member)
        assert _parameters(getattr(native_class, method)) == expected, method
    assert _parameters(native_class) == _parameters(pure_class)


def _field(name: str) -> str:
    return {"SeenCache": "seen_cache", "MessageCache": "message_cache", "MeshState": "mesh_state"}[
        name
    ]


def _parameters(function: Any) -> list[tuple[str, object]]:
    """Parameter names and kinds (defaults of native ints show as '...': not compared)."""
    return [
        (parameter.name, parameter.kind)
        for parameter in inspect.signature(function).parameters.values()
        if parameter.name not in ("self", "cls")
    ]


class _Pair(NamedTuple):
    topic: str
    source: bytes | None


_ITEMS = st.one_of(
    st.tuples(st.sampled_from(TOPICS), st.one_of(st.none(), st.sampled_from(PEERS))),
    st.tuples(st.integers(0, 3), st.none()),
    st.tuples(st.sampled_from(TOPICS), st.integers(0, 3)),
    st.tuples(st.sampled_from(TOPICS)),
    st.sampled_from(["a", b"a", None, 7]),
    st.tuples(st.sampled_from(["\ud800", "a\udfff"]), st.none()),  # not UTF-8 encodable
    st.builds(_Pair, st.sampled_from(TOPICS), st.none()),  # a tuple subclass is a pair too
)


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(_ITEMS, max_size=6),
    flat=st.booleans(),
    flood=st.sampled_from([False, True, 0, 1, None]),
    now=st.sampled_from([1.0, 5.0, float("nan"), float("inf")]),
    seed=st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([-1, 2**64, 1.5, "x"])),
)
def test_malformed_publish_batches_fail_alike_and_publish_nothing(
    items: list[object], flat: bool, flood: object, now: float, seed: object
) -> None:
    """A bad item, time or seed anywhere in a batch: the same exception type on both
    backends, raised before anything is published (no fan-out is chosen)."""
    outcomes: list[object] = []
    for name in ("pure", "native"):
        state = backend_module.implementation(name).mesh_state()
        for peer in PEERS[:8]:
            state.add_peer(peer, True, PROTOCOL_MESHSUB_V11)
            for topic in TOPICS:
                state.peer_subscribed(peer, topic)
        call = state.publish_targets_flat if flat else state.publish_targets_many
        try:
            result: object = call(items, flood, now, seed)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            result = type(exc)
            assert all(state.fanout_peers(topic) == [] for topic in TOPICS)
        outcomes.append(result)
    assert outcomes[0] == outcomes[1]
