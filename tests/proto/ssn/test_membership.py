"""SSN federation membership (SWIM with suspicion): convergence, failure detection that
tolerates slow members, refutation, order-independent merging, hostile input."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core import cbor
from neonet.core.errors import DecodeError, RemoteProtocolError
from neonet.proto.ssn.membership import (
    Member,
    MemberDied,
    MemberLeft,
    Membership,
    MembershipConfig,
    MemberState,
    MemberSuspected,
    Message,
    MessageKind,
    decode_message,
    encode_message,
)
from tests.proto.ssn.sim import Network, member_id


def converged(network: Network) -> bool:
    running = [i for i in network.engines if i not in network.down]
    for identity in running:
        engine = network.engines[identity]
        alive = {m.member_id for m in engine.members() if m.state is MemberState.ALIVE}
        if alive != set(running):
            return False
    return True


def run_until_converged(network: Network, limit: float) -> float:
    while not converged(network):
        if network.now >= limit:
            raise AssertionError(f"no convergence by t={limit}")
        network.run_until(network.now + 0.1)
    return network.now


def test_members_joining_through_one_seed_all_learn_each_other() -> None:
    network = Network(12)
    network.join_all(seeds=[0])
    took = run_until_converged(network, limit=30.0)
    assert took < 10.0
    # And they stay converged, with nobody suspected, while every probe is answered.
    network.run_until(took + 30.0)
    assert converged(network)
    assert not [e for e in network.events if isinstance(e[2], MemberSuspected | MemberDied)]


def test_a_killed_member_is_declared_dead_by_everyone_within_the_bound() -> None:
    network = Network(10)
    network.join_all()
    start = run_until_converged(network, limit=30.0)
    network.kill(4)
    # Detection: every member probes it within one round (<= 9 periods); then the
    # suspicion timeout (5 periods at this size) and a little dissemination.
    bound = start + 9 * 1.0 + 1.0 + 5.0 + 3.0
    while network.states_of(4) != {MemberState.DEAD}:
        assert network.now < bound, f"not everyone saw it die by {bound}: {network.states_of(4)}"
        network.run_until(network.now + 0.1)
    died = [t for t, _, e in network.events if isinstance(e, MemberDied)]
    assert len(died) == 9 and min(died) >= start
    # Suspected before declared dead, never dead at once.
    suspected = [t for t, _, e in network.events if isinstance(e, MemberSuspected)]
    assert suspected and min(suspected) < min(died)


def test_a_stalled_member_is_suspected_but_refutes_and_never_dies() -> None:
    config = MembershipConfig(ack_timeout=0.3, protocol_period=1.0)
    network = Network(8, config=config)
    network.join_all()
    start = run_until_converged(network, limit=30.0)
    stalled = member_id(3)
    # Member 3 stalls for 6 s (longer than the 5 s suspicion timeout): everything it sends
    # or receives takes 0.55 s one way, so probes of it miss the ack timeout and the
    # protocol period, and it gets suspected.
    network.extra_delay[stalled] = 0.55
    network.run_until(start + 6.0)
    del network.extra_delay[stalled]
    network.run_until(start + 40.0)
    assert [e for _, _, e in network.events if isinstance(e, MemberSuspected)], (
        "the stall should have made member 3 a suspect"
    )
    assert not [e for _, _, e in network.events if isinstance(e, MemberDied)]
    assert network.engines[stalled].local.incarnation > 0  # it refuted
    assert converged(network)


def test_indirect_probes_keep_a_member_behind_one_broken_link_alive() -> None:
    network = Network(6)
    network.join_all()
    start = run_until_converged(network, limit=30.0)
    network.cut.add(frozenset((member_id(0), member_id(1))))
    network.run_until(start + 40.0)
    suspicions = [
        (observer, e.member.member_id)
        for _, observer, e in network.events
        if isinstance(e, MemberSuspected)
    ]
    assert not suspicions
    assert converged(network)


def test_a_dead_member_restarted_fresh_refutes_its_tombstone_and_rejoins() -> None:
    network = Network(6)
    network.join_all()
    start = run_until_converged(network, limit=30.0)
    network.kill(2)
    while network.states_of(2) != {MemberState.DEAD}:
        assert network.now < start + 40.0
        network.run_until(network.now + 0.2)
    restarted = network.add(2)  # a new process: incarnation 0 again
    restarted.join([(member_id(0), network.engines[member_id(0)].local.address)], network.now)
    run_until_converged(network, limit=network.now + 20.0)
    assert restarted.local.incarnation > 0


def test_a_graceful_leave_is_seen_without_suspicion() -> None:
    network = Network(6)
    network.join_all()
    start = run_until_converged(network, limit=30.0)
    network.engines[member_id(5)].leave(network.now)
    network.run_until(start + 0.5)
    network.kill(5)
    network.run_until(start + 10.0)
    assert network.states_of(5) == {MemberState.LEFT}
    assert len([e for _, _, e in network.events if isinstance(e, MemberLeft)]) == 5
    assert not [e for _, _, e in network.events if isinstance(e, MemberSuspected)]


# --- merging --------------------------------------------------------------------------
member_ids = st.sampled_from([b"a", b"b", b"c"])
updates = st.builds(
    Member,
    member_id=member_ids,
    address=st.sampled_from(["/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2"]),
    region=st.just("eu"),
    incarnation=st.integers(0, 3),
    state=st.sampled_from(list(MemberState)),
)


def _fresh() -> Membership:
    return Membership(b"local", "/ip4/127.0.0.1/tcp/9", "eu", now=0.0, rng=random.Random(0))


def _deliver_one_by_one(engine: Membership, sequence: list[Member]) -> dict[bytes, Member]:
    for update in sequence:
        data = encode_message(Message(MessageKind.SYNC, is_reply=True, updates=(update,)))
        engine.receive(b"peer", data, 0.0)
    return {m.member_id: m for m in engine.members() if m.member_id != b"local"}


@settings(max_examples=200, deadline=None)
@given(st.lists(updates, max_size=12), st.randoms(use_true_random=False))
def test_any_delivery_order_ends_in_the_same_view(
    sequence: list[Member], shuffler: random.Random
) -> None:
    reordered = list(sequence)
    shuffler.shuffle(reordered)
    first = _deliver_one_by_one(_fresh(), sequence)
    second = _deliver_one_by_one(_fresh(), reordered)
    assert {k: (m.state, m.incarnation) for k, m in first.items()} == {
        k: (m.state, m.incarnation) for k, m in second.items()
    }
    for key, member in first.items():
        best = max(
            (u for u in sequence if u.member_id == key), key=lambda u: (u.incarnation, u.state)
        )
        assert (member.incarnation, member.state) == (best.incarnation, best.state)


def test_only_the_member_raises_its_own_incarnation() -> None:
    engine = _fresh()
    rumour = Member(b"local", "x", "eu", 5, MemberState.SUSPECT)
    engine.receive(
        b"peer", encode_message(Message(MessageKind.PING, seq=1, updates=(rumour,))), 0.0
    )
    assert engine.local.incarnation == 6 and engine.local.state is MemberState.ALIVE
    # The refutation goes out with the answer.
    (ack,) = engine.data_to_send()
    sent = decode_message(ack.data)
    assert sent.kind is MessageKind.ACK and engine.local in sent.updates


# --- hostile input --------------------------------------------------------------------
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_refuses_garbage_cleanly(data: bytes) -> None:
    try:
        message = decode_message(data)
    except DecodeError:
        return
    assert encode_message(message) == data


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(list(MessageKind)),
    st.integers(0, 2**63 - 1),
    st.lists(updates, max_size=5),
    st.booleans(),
)
def test_messages_round_trip(
    kind: MessageKind, seq: int, sequence: list[Member], is_reply: bool
) -> None:
    if kind is MessageKind.SYNC:
        message = Message(kind, is_reply=is_reply, updates=tuple(sequence))
    elif kind is MessageKind.PING_REQ:
        message = Message(kind, seq=seq, target=b"t", updates=tuple(sequence))
    else:
        message = Message(kind, seq=seq, updates=tuple(sequence))
    assert decode_message(encode_message(message)) == message


def test_gossip_messages_carry_updates_and_get_no_answer() -> None:
    engine = _fresh()
    news = Member(b"n", "/ip4/127.0.0.1/tcp/5", "eu", 2, MemberState.ALIVE)
    engine.receive(b"peer", encode_message(Message(MessageKind.GOSSIP, updates=(news,))), 0.0)
    assert engine.member(b"n") == news
    assert engine.data_to_send() == []


@pytest.mark.parametrize(
    "value",
    [
        [2, 0, 1, []],  # unknown version
        [1, 9, 1, []],  # unknown kind
        [1, 0, -1, []],  # negative sequence
        [1, 0, 1, [[7, b"a", 0, "", ""]]],  # unknown state
        [1, 0, 1, [[0, b"", 0, "", ""]]],  # empty member ID
        [1, 0, 1, [[0, b"a", 2**63, "", ""]]],  # incarnation too large
        [1, 2, 1, []],  # PING_REQ without target
        [1, 3, 1, []],  # SYNC reply flag not a boolean
    ],
)
def test_malformed_messages_are_refused_and_change_nothing(value: list[object]) -> None:
    engine = _fresh()
    before = engine.members()
    with pytest.raises(RemoteProtocolError):
        engine.receive(b"peer", cbor.encode(value), 0.0)
    assert engine.members() == before
    assert engine.data_to_send() == []


def test_limits_on_members_and_message_size() -> None:
    config = MembershipConfig(max_members=4, max_message_size=2000)
    engine = Membership(b"local", "a", "eu", now=0.0, rng=random.Random(0), config=config)
    for first in (1, 4, 7):
        batch = tuple(
            Member(bytes([i]), "a", "eu", 0, MemberState.ALIVE) for i in range(first, first + 3)
        )
        engine.receive(b"peer", encode_message(Message(MessageKind.SYNC, True, updates=batch)), 0.0)
    assert len(engine.members()) == 4
    # A view larger than the limit is refused whole.
    many = tuple(Member(bytes([i + 1]), "a", "eu", 0, MemberState.ALIVE) for i in range(10))
    with pytest.raises(DecodeError, match="member limit"):
        engine.receive(b"peer", encode_message(Message(MessageKind.SYNC, True, updates=many)), 0.0)
    huge = encode_message(
        Message(
            MessageKind.SYNC,
            is_reply=True,
            updates=tuple(
                Member(bytes([i + 1]), "x" * 200, "eu", 0, MemberState.ALIVE) for i in range(20)
            ),
        )
    )
    with pytest.raises(DecodeError, match="exceeds"):
        engine.receive(b"peer", huge, 0.0)
    flood = tuple(Member(bytes([i + 1]), "", "", 0, MemberState.ALIVE) for i in range(100))
    config = MembershipConfig(max_members=1000)
    engine = Membership(b"local", "a", "eu", now=0.0, rng=random.Random(0), config=config)
    with pytest.raises(RemoteProtocolError, match="too many"):
        engine.receive(b"peer", encode_message(Message(MessageKind.PING, 1, updates=flood)), 0.0)


def test_admission_keeps_unlisted_members_out() -> None:
    engine = Membership(
        b"local", "a", "eu", now=0.0, rng=random.Random(0), admit=lambda m: m != b"intruder"
    )
    updates_ = (
        Member(b"intruder", "a", "eu", 0, MemberState.ALIVE),
        Member(b"friend", "a", "eu", 0, MemberState.ALIVE),
    )
    engine.receive(
        b"friend", encode_message(Message(MessageKind.SYNC, True, updates=updates_)), 0.0
    )
    assert {m.member_id for m in engine.members()} == {b"local", b"friend"}
