"""The router's batch path (neonet.proto.gossipsub ``_handle_batch``, ``_accept_many``).

The messages of one received RPC meet the core's seen-cache in one lookup and one insert,
and those accepted at once get their fan-out targets from one ``publish_targets_flat``
call; IHAVE IDs are looked up with one call per topic. These tests hold that path to the
per-message one: a Hypothesis differential test feeds two routers (same identity, seed
and backend; one with the batch path switched off) the same RPCs, validations and
heartbeats and requires the same output, statistics, scores, seen-cache and mesh after
every step. Both backends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neonet.core.backend import Implementation
from neonet.core.gossip import (
    PROTOCOL_FLOODSUB,
    PROTOCOL_MESHSUB_V10,
    PROTOCOL_MESHSUB_V11,
    PROTOCOL_MESHSUB_V12,
)
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.proto.gossipsub import GossipRouter, RouterOutput, ValidationResult
from neonet.proto.gossipsub_rpc import Control, Message, Rpc, decode_rpc, encode_rpc, sign_message

TOPICS = ("a", "b", "v")  # "v" waits for validation
UNJOINED = "elsewhere"
PROTOCOLS = (
    PROTOCOL_MESHSUB_V12,
    PROTOCOL_MESHSUB_V12,
    PROTOCOL_MESHSUB_V12,
    PROTOCOL_MESHSUB_V11,
    PROTOCOL_MESHSUB_V11,
    PROTOCOL_MESHSUB_V10,
    PROTOCOL_FLOODSUB,
    PROTOCOL_MESHSUB_V12,
)


def _identity(number: int) -> tuple[Ed25519Identity, bytes]:
    identity = Ed25519Identity.from_seed(number.to_bytes(32, "big"))
    return identity, PeerId.from_public_key(identity.public_key).to_bytes()


LOCAL = _identity(1000)
PEERS = [_identity(number) for number in range(len(PROTOCOLS))]
AUTHORS = [_identity(2000 + number) for number in range(3)] + PEERS[:2]


def _pool() -> list[Message]:
    """Signed messages: joined and unjoined topics, large ones (IDONTWANT), forgeries
    (same ID as a genuine message, broken signature) and unsigned ones."""
    pool: list[Message] = []
    for seqno in range(1, 13):
        identity, _ = AUTHORS[seqno % len(AUTHORS)]
        topic = (*TOPICS, UNJOINED)[seqno % 4]
        data = bytes(1200) if seqno % 5 == 0 else b"message %d" % seqno
        pool.append(sign_message(identity, topic, data, seqno))
    pool.append(dataclasses.replace(pool[0], data=b"forged"))
    pool.append(dataclasses.replace(pool[1], data=b"forged too"))
    pool.append(Message(topic="a", data=b"unsigned"))
    return pool


POOL = _pool()
POOL_IDS = [m.from_peer + m.seqno for m in POOL if m.from_peer and m.seqno]


def _routers(backend: Implementation) -> tuple[GossipRouter, GossipRouter]:
    """The router under test and its per-message twin, meshed with ``PEERS``."""
    pair = []
    for batch in (True, False):
        router = GossipRouter(LOCAL[0], LOCAL[1], seed=42, implementation=backend)
        if not batch:
            router._batch_min = 1 << 30
        router.set_validated("v", True)
        for index, (_, peer) in enumerate(PEERS):
            router.add_peer(peer, PROTOCOLS[index], index % 3 == 0, 0.0, "127.0.0.1")
            topics = [t for t in (*TOPICS, UNJOINED) if (index + len(t)) % 4 != 0]
            router.handle_rpc(peer, Rpc(subscriptions=[(True, t) for t in topics]), 0.0)
        for topic in TOPICS:
            router.subscribe(topic, 0.0)
        router.heartbeat(1.0)
        pair.append(router)
    return pair[0], pair[1]


def _wire(rpc: Rpc) -> Rpc:
    return decode_rpc(encode_rpc(rpc), lazy=True)  # as the service decodes


def _output(out: RouterOutput) -> tuple[Any, ...]:
    return (
        {peer: encode_rpc(rpc) for peer, rpc in out.send.items()},
        [(p.msg_id, p.message, p.source) for p in out.validate],
        [(d.msg_id, d.message, d.source) for d in out.deliver],
        out.px,
    )


def _state(router: GossipRouter, now: float) -> tuple[Any, ...]:
    return (
        router.stats,
        [router.peer_score(peer) for _, peer in PEERS],
        len(router.seen),
        [msg_id in router.seen for msg_id in POOL_IDS],
        [router.mesh_peers(topic) for topic in TOPICS],
        router._rng.next_u64(),  # the random streams are in step (both draw one here)
    )


_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("rpc"),
            st.integers(0, len(PEERS) - 1),
            st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=8),
            st.lists(st.integers(0, len(POOL_IDS) + 3), max_size=6),
        ),
        st.tuples(st.just("validate"), st.sampled_from(list(ValidationResult))),
        st.tuples(st.just("heartbeat"), st.floats(0.1, 4.0)),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=_steps)
def test_batch_path_matches_per_message_path(
    backend: Implementation, steps: list[tuple[Any, ...]]
) -> None:
    batched, single = _routers(backend)
    routers = (batched, single)
    now = 1.0
    pending: list[list[Any]] = [[], []]
    for step in steps:
        if step[0] == "rpc":
            _, sender, picks, ihave_picks = step
            ids = [POOL_IDS[i] if i < len(POOL_IDS) else b"unknown %d" % i for i in ihave_picks]
            rpc = Rpc(
                messages=[POOL[i] for i in picks],
                control=Control(ihave=[("a", ids), ("v", ids[::-1])] if ids else []),
            )
            for router in routers:
                router.handle_rpc(PEERS[sender][1], _wire(rpc), now)
        elif step[0] == "validate":
            for router, queue in zip(routers, pending, strict=True):
                if queue:
                    router.validation_done(queue.pop(0), step[1], now)
        else:
            now += step[1]
            for router in routers:
                router.heartbeat(now)
        outputs = [router.drain() for router in routers]
        assert _output(outputs[0]) == _output(outputs[1])
        assert _state(batched, now) == _state(single, now)
        for queue, out in zip(pending, outputs, strict=True):
            queue.extend(out.validate)


class _CountingSeen:
    """A seen-cache proxy that counts the calls the router makes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __contains__(self, msg_id: bytes) -> bool:
        self.calls.append("in")
        return msg_id in self.inner

    def add(self, msg_id: bytes, now: float) -> bool:
        self.calls.append("add")
        return bool(self.inner.add(msg_id, now))

    def contains_many(self, msg_ids: Iterable[bytes]) -> list[bool]:
        self.calls.append("contains_many")
        return list(self.inner.contains_many(msg_ids))

    def add_many(self, msg_ids: Iterable[bytes], now: float) -> list[bool]:
        self.calls.append("add_many")
        return list(self.inner.add_many(msg_ids, now))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_one_rpc_crosses_the_seen_cache_twice(backend: Implementation) -> None:
    router, _ = _routers(backend)
    counting = _CountingSeen(router.seen)
    router.seen = counting  # type: ignore[assignment]
    topic_a = [m for m in POOL[:12] if m.topic == "a"]
    assert len(topic_a) == 3
    first, second, third = topic_a
    # The second copy of ``first`` in the same RPC counts as a duplicate.
    router.handle_rpc(PEERS[0][1], _wire(Rpc(messages=[first, second, first, third])), 2.0)
    assert counting.calls == ["contains_many", "add_many"]
    assert router.stats.messages_received == 3
    assert router.stats.duplicates_received == 1
    out = router.drain()
    assert [d.message for d in out.deliver] == [first, second, third]
    ids = [m.from_peer + m.seqno for m in (first, second, third)]  # type: ignore[operator]
    assert all(msg_id in counting.inner for msg_id in ids)
    # The IHAVE IDs of a topic: one lookup; only the unknown one is asked for.
    counting.calls.clear()
    ihave = Control(ihave=[("a", [*ids, b"never seen"])])
    router.handle_rpc(PEERS[0][1], _wire(Rpc(control=ihave)), 2.0)
    assert counting.calls == ["contains_many"]
    assert router.drain().send[PEERS[0][1]].control.iwant == [b"never seen"]
    # A single message takes the per-message calls.
    counting.calls.clear()
    router.handle_rpc(PEERS[1][1], _wire(Rpc(messages=[first])), 2.0)
    assert counting.calls == ["in"]


def test_forged_first_copy_does_not_shadow_the_genuine_one(backend: Implementation) -> None:
    router, _ = _routers(backend)
    genuine = POOL[0]
    forged = POOL[-3]
    assert forged.seqno == genuine.seqno and forged.from_peer == genuine.from_peer
    assert genuine.topic in TOPICS[:2]
    router.handle_rpc(PEERS[0][1], _wire(Rpc(messages=[forged, genuine, genuine])), 2.0)
    stats = router.stats
    assert (stats.invalid_received, stats.messages_received, stats.duplicates_received) == (
        1,
        2,
        1,
    )
    assert [d.message for d in router.drain().deliver] == [genuine]
