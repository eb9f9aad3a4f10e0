"""The sending SSN's per-read SIGNAL -> FORWARD engine (neonet.core.signal_router and
neonet._native.SignalRouter): both backends against the protocols' decoders, and against
each other on random operation sequences (valid, mutated and random frames; bad
arguments), with the same results and the same errors."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core import backend as backend_module
from neonet.core.errors import LimitExceededError
from neonet.core.signal_router import FIRST_ID
from neonet.proto.ssn import client_protocol as cp
from neonet.proto.ssn import federation as fed

BACKENDS = ["pure", "native"]
PEERS = [bytes((0, 4)) + bytes((i,)) * 4 for i in range(4)]
SENDER = bytes((0, 4)) + b"\xee" * 4


def make(name: str, max_payload: int = 64, max_pending: int = 6, max_routes: int = 3) -> Any:
    return backend_module.implementation(name).SignalRouter(
        max_payload, 5.0, max_pending, max_routes
    )


def body(message: cp.ClientMessage | fed.FederationMessage) -> bytes:
    if isinstance(message, fed.Forward | fed.Forwarded | fed.Stored):
        return fed.encode_message(message)
    return cp.encode_message(message)


def bodies_of(blob: bytes) -> list[bytes]:
    frames, used = backend_module.implementation("pure").ssn_wire.split_frames(blob, 1 << 20)
    assert used == len(blob)
    return frames


@pytest.mark.parametrize("name", BACKENDS)
def test_signals_become_forwards_and_forwardeds_signal_sents(name: str) -> None:
    router = make(name)
    router.set_route(PEERS[0], 1)
    router.set_route(PEERS[1], 2)
    router.set_route(PEERS[2], 3)  # its member has no open link
    router.open_link(1, 10)
    router.open_link(2, 20)
    register = cp.encode_message(cp.Registered(9))
    read = [
        body(cp.Signal(7, PEERS[0], b"offer")),
        body(cp.Signal(8, PEERS[1], b"x" * 64)),
        body(cp.Signal(12, PEERS[0], b"again")),
        register,  # from here on: not taken (only the prefix before it is)
        body(cp.Signal(13, PEERS[0], b"after the register")),
    ]
    forwards, rest, taken = router.route(5, SENDER, read, 100, 1.0)
    assert taken == 3 and len(router) == 3
    assert rest == read[3:]
    assert rest[0] is register  # (the caller's own objects come back)
    assert [link for link, _ in forwards] == [10, 20]
    sent = {link: [fed.decode_message(b) for b in bodies_of(blob)] for link, blob in forwards}
    assert sent[10] == [
        fed.Forward(FIRST_ID, SENDER, PEERS[0], b"offer"),
        fed.Forward(FIRST_ID + 2, SENDER, PEERS[0], b"again"),
    ]
    assert sent[20] == [fed.Forward(FIRST_ID + 1, SENDER, PEERS[1], b"x" * 64)]

    answers_in = [
        body(fed.Forwarded(FIRST_ID + 2, cp.SignalStatus.QUEUED)),
        body(fed.Forwarded(FIRST_ID + 1, cp.SignalStatus.DELIVERED)),  # not this link's
        body(fed.Stored(3)),
        body(fed.Forwarded(FIRST_ID, cp.SignalStatus.DELIVERED)),
    ]
    answers, rest = router.answer(10, answers_in)
    assert rest == [answers_in[1], answers_in[2]]
    assert [(stream, count) for stream, _, count in answers] == [(5, 2)]
    assert [cp.decode_message(b) for b in bodies_of(answers[0][1])] == [
        cp.SignalSent(12, cp.SignalStatus.QUEUED),
        cp.SignalSent(7, cp.SignalStatus.DELIVERED),
    ]
    assert router.take(10, FIRST_ID + 1) is None
    assert router.take(20, FIRST_ID + 1) == (5, 8, PEERS[1], b"x" * 64)
    assert len(router) == 0


@pytest.mark.parametrize("name", BACKENDS)
def test_frames_after_one_not_taken_keep_their_place(name: str) -> None:
    router = make(name)
    router.set_route(PEERS[0], 1)
    router.set_route(PEERS[2], 3)  # its member has no open link
    router.open_link(1, 10)
    routed = body(cp.Signal(1, PEERS[0], b"routed"))
    for first in [
        cp.encode_message(cp.Lookup(2, PEERS[0])),  # its rate token comes first
        body(cp.Signal(3, PEERS[0], b"x" * 65)),  # over max_payload
        body(cp.Signal(4, PEERS[2], b"no link")),
        body(cp.Signal(5, PEERS[3], b"no route")),
        body(cp.Signal(6, PEERS[0], b"cut"))[:-1],  # malformed: the stream closes first
    ]:
        assert router.route(1, SENDER, [first, routed], 9, 0.0) == ([], [first, routed], 0)
    forward = body(fed.Forward(1, SENDER, PEERS[0], b"a"))
    for first in [body(fed.Stored(2)), body(fed.Forward(3, SENDER, PEERS[0], b"x" * 65))]:
        assert router.deliver([first, forward]) == ([], [first, forward])
    cut = forward[:-1]  # malformed
    assert router.deliver([cut, forward]) == ([], [cut, forward])
    assert len(router) == 0


@pytest.mark.parametrize("name", BACKENDS)
def test_forwards_become_incoming_and_forwarded_per_recipient(name: str) -> None:
    router = make(name)
    read = [
        body(fed.Forward(1, SENDER, PEERS[0], b"a")),
        body(fed.Forward(2, PEERS[3], PEERS[1], b"b")),
        body(fed.Forward(4, SENDER, PEERS[0], b"c")),
        body(fed.Stored(3)),  # from here on: not taken
        body(fed.Forward(5, SENDER, PEERS[0], b"d")),
    ]
    groups, rest = router.deliver(read)
    assert rest == read[3:]
    assert [(to, taken) for to, _, _, taken in groups] == [(PEERS[0], [0, 2]), (PEERS[1], [1])]
    decoded = [
        (
            [cp.decode_message(b) for b in bodies_of(incoming)],
            [fed.decode_message(b) for b in bodies_of(forwarded)],
        )
        for _, incoming, forwarded, _ in groups
    ]
    delivered = fed.Forwarded
    assert decoded == [
        (
            [cp.Incoming(SENDER, b"a"), cp.Incoming(SENDER, b"c")],
            [delivered(1, cp.SignalStatus.DELIVERED), delivered(4, cp.SignalStatus.DELIVERED)],
        ),
        ([cp.Incoming(PEERS[3], b"b")], [delivered(2, cp.SignalStatus.DELIVERED)]),
    ]
    assert router.deliver([]) == ([], [])


@pytest.mark.parametrize("name", BACKENDS)
def test_budget_bounds_expiry_and_closed_links(name: str) -> None:
    router = make(name, max_pending=3)
    router.set_route(PEERS[0], 1)
    router.open_link(1, 10)
    read = [body(cp.Signal(rid, PEERS[0], b"p")) for rid in range(5)]
    assert router.route(1, SENDER, read, 0, 0.0)[1:] == (read, 0)  # no budget
    _, rest, taken = router.route(1, SENDER, read, 2, 0.0)
    assert (rest, taken) == (read[2:], 2)
    _, rest, taken = router.route(2, SENDER, read[2:], 9, 1.0)
    assert (rest, taken) == (read[3:], 1)  # max_pending
    assert router.expire(4.999) == []
    assert router.expire(5.0) == [(1, 0, PEERS[0], b"p"), (1, 1, PEERS[0], b"p")]
    assert router.close_link(10) == [(2, 2, PEERS[0], b"p")]
    assert router.route(1, SENDER, read, 9, 9.0)[1:] == (read, 0)  # the link is closed
    router.open_link(1, 11)
    assert router.route(1, SENDER, read[:1], 9, 9.0)[2] == 1
    router.drop_route(PEERS[0])
    assert router.route(1, SENDER, read[:1], 9, 9.0)[2] == 0


@pytest.mark.parametrize("name", BACKENDS)
def test_bad_arguments_and_the_route_bound(name: str) -> None:
    cls = backend_module.implementation(name).SignalRouter
    with pytest.raises(ValueError, match="max_payload exceeds"):
        cls(65537, 1.0, 1, 1)
    with pytest.raises(ValueError, match="timeout must be positive"):
        cls(10, float("nan"), 1, 1)
    with pytest.raises(ValueError, match="at least 1"):
        cls(10, 1.0, 0, 1)
    with pytest.raises(OverflowError):
        cls(-1, 1.0, 1, 1)
    router = make(name, max_routes=1)
    with pytest.raises(ValueError, match="not a peer ID"):
        router.set_route(b"junk", 1)
    with pytest.raises(TypeError):
        router.set_route(bytearray(PEERS[0]), 1)
    router.set_route(PEERS[0], 1)
    with pytest.raises(LimitExceededError, match="1 routes already held"):
        router.set_route(PEERS[1], 1)
    with pytest.raises(TypeError):
        router.route(1, SENDER, [b"ok", "text"], 1, 0.0)
    with pytest.raises(TypeError):
        router.route(1, SENDER, "text", 1, 0.0)
    with pytest.raises(OverflowError):
        router.route(1, SENDER, [], -1, 0.0)
    assert router.routes == 1
    # Times convert as the binding's f64 does: anything with __float__ or __index__.
    for now in [Decimal("1.5"), Fraction(1, 2), True, 7]:
        assert router.expire(now) == []
    for bad in ["1", None, b"1"]:
        with pytest.raises(TypeError):
            router.expire(bad)
    with pytest.raises(OverflowError):
        router.expire(10**400)


# --- differential: random operation sequences on both backends --------------------------


def _valid_signal(draw: st.DrawFn) -> bytes:
    rid = draw(st.one_of(st.integers(0, 30), st.integers(0, (1 << 63) - 1)))
    to = draw(st.sampled_from(PEERS))
    payload = draw(st.binary(max_size=70))
    if draw(st.integers(0, 2)) == 0:  # a FORWARD (federation), for deliver
        return body(fed.Forward(rid, draw(st.sampled_from(PEERS)), to, payload))
    return body(cp.Signal(rid, to, payload))


@st.composite
def frame_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind <= 1:
        return _valid_signal(draw)
    if kind == 2:  # one byte changed or cut
        data = bytearray(_valid_signal(draw))
        index = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data[index] = draw(st.integers(0, 255))
            return bytes(data)
        return bytes(data[:index])
    if kind == 3:
        rid = draw(st.one_of(st.integers(FIRST_ID, FIRST_ID + 12), st.integers(0, 40)))
        return body(fed.Forwarded(rid, draw(st.sampled_from(list(cp.SignalStatus)))))
    if kind == 4:
        return body(cp.Registered(draw(st.integers(0, 99))))
    return draw(st.binary(max_size=40))


numbers = st.one_of(st.integers(0, 3), st.sampled_from([-1, 1 << 64, (1 << 64) - 1]))
operations = st.one_of(
    st.tuples(st.just("set_route"), st.one_of(st.sampled_from(PEERS), st.binary()), numbers),
    st.tuples(st.just("drop_route"), st.sampled_from(PEERS)),
    st.tuples(st.just("open_link"), numbers, numbers),
    st.tuples(st.just("close_link"), numbers),
    st.tuples(
        st.just("route"),
        numbers,
        st.sampled_from([SENDER, PEERS[1]]),
        st.lists(frame_bodies(), max_size=8),
        st.one_of(st.integers(0, 9), st.just(-1)),
        st.floats(0, 20),
    ),
    st.tuples(st.just("answer"), numbers, st.lists(frame_bodies(), max_size=8)),
    st.tuples(st.just("deliver"), st.lists(frame_bodies(), max_size=8)),
    st.tuples(st.just("take"), numbers, st.integers(FIRST_ID - 1, FIRST_ID + 12)),
    st.tuples(st.just("expire"), st.one_of(st.floats(0, 30), st.decimals(0, 30, places=2))),
)


def _check_prefix(name: str, read: list[bytes], outcome: tuple[object, ...]) -> None:
    """``route``/``deliver`` take a prefix of the read; the rest is the read's tail."""
    result: Any = outcome[1]
    rest = result[1]
    done = len(read) - len(rest)
    assert rest == read[done:]
    if name == "route":
        assert result[2] == done
    else:
        assert sorted(i for group in result[0] for i in group[3]) == list(range(done))


def _outcome(call: Callable[..., object], arguments: list[Any]) -> tuple[object, ...]:
    try:
        return ("ok", call(*arguments))
    except (ValueError, LimitExceededError) as exc:
        return ("error", type(exc), str(exc))
    except (TypeError, OverflowError) as exc:  # (texts of the argument conversion differ)
        return ("error", type(exc))


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=25))
def test_both_backends_agree_on_any_operation_sequence(ops: list[tuple[Any, ...]]) -> None:
    pure, native = make("pure", max_routes=4), make("native", max_routes=4)
    for router in (pure, native):  # most sequences then take some SIGNALs
        for member, peer in enumerate(PEERS[:3]):
            router.set_route(peer, member)
            router.open_link(member, member + 1)
    for op in ops:
        name, *arguments = op
        expected = _outcome(getattr(pure, name), arguments)
        got = _outcome(getattr(native, name), arguments)
        assert got == expected, op
        if name in ("route", "deliver") and expected[0] == "ok":
            _check_prefix(name, list(arguments[2] if name == "route" else arguments[0]), got)
        assert (len(native), native.routes) == (len(pure), pure.routes)
