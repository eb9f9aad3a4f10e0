"""multistream-select engines: dialer and listener against each other and against raw bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core.errors import (
    DecodeError,
    LocalProtocolError,
    NegotiationError,
    RemoteProtocolError,
)
from neonet.core.varint import decode_uvarint, encode_uvarint
from neonet.proto.multistream import (
    MAX_MESSAGE_LENGTH,
    PROTOCOL_ID,
    MultistreamDialer,
    MultistreamListener,
    accept_pipelined_proposal,
    encode_message,
    match_pipelined_proposal,
)

HEADER = encode_message(PROTOCOL_ID)
NA = encode_message("na")


def run(dialer: MultistreamDialer, listener: MultistreamListener) -> None:
    """Shuttle bytes both ways until neither side has anything more to say."""
    for _ in range(200):
        to_listener = dialer.data_to_send()
        if to_listener and not listener.done:
            listener.receive_data(to_listener)
        to_dialer = listener.data_to_send()
        if to_dialer and not dialer.done:
            dialer.receive_data(to_dialer)
        if not to_listener and not to_dialer:
            return
    raise AssertionError("negotiation did not settle")


def split_messages(data: bytes) -> list[bytes]:
    """Parse framed messages (bodies without the newline) out of a byte string."""
    out = []
    offset = 0
    while offset < len(data):
        length, offset = decode_uvarint(data, offset)
        body = data[offset : offset + length]
        assert body.endswith(b"\n")
        out.append(body[:-1])
        offset += length
    return out


def test_known_bytes_of_header() -> None:
    assert HEADER == b"\x13/multistream/1.0.0\n"
    assert len("/multistream/1.0.0\n") == 0x13
    assert encode_message("na") == bytes.fromhex("036e610a")
    assert encode_message("ls") == bytes.fromhex("036c730a")


def test_dialer_pipelines_header_and_first_proposal() -> None:
    dialer = MultistreamDialer(["/a/1", "/b/1"])
    assert dialer.data_to_send() == HEADER + encode_message("/a/1")
    assert dialer.data_to_send() == b""


def test_listener_sends_its_header_at_once() -> None:
    listener = MultistreamListener({"/a/1"})
    assert listener.data_to_send() == HEADER


def test_single_proposal_accepted() -> None:
    dialer = MultistreamDialer(["/a/1"])
    listener = MultistreamListener({"/a/1"})
    run(dialer, listener)
    assert dialer.done and listener.done
    assert dialer.selected == listener.selected == "/a/1"
    assert dialer.leftover == listener.leftover == b""


def test_first_refused_second_accepted() -> None:
    dialer = MultistreamDialer(["/a/1", "/b/1"])
    listener = MultistreamListener({"/b/1"})
    dialer.receive_data(listener.data_to_send())
    listener.receive_data(dialer.data_to_send())
    assert listener.data_to_send() == NA
    dialer.receive_data(NA)
    proposal = dialer.data_to_send()
    assert proposal == encode_message("/b/1")
    assert not dialer.done
    listener.receive_data(proposal)
    dialer.receive_data(listener.data_to_send())
    assert dialer.selected == listener.selected == "/b/1"


def test_predicate_listener() -> None:
    dialer = MultistreamDialer(["/x/1", "/y/2"])
    listener = MultistreamListener(lambda protocol: protocol.startswith("/y/"))
    run(dialer, listener)
    assert dialer.selected == listener.selected == "/y/2"


def test_none_accepted_raises_negotiation_error() -> None:
    dialer = MultistreamDialer(["/a/1", "/b/1"])
    listener = MultistreamListener({"/c/1"})
    with pytest.raises(NegotiationError, match=r"none of \['/a/1', '/b/1'\] supported by peer"):
        run(dialer, listener)
    assert not dialer.done and not listener.done


def test_failed_dialer_refuses_more_input() -> None:
    dialer = MultistreamDialer(["/a/1"])
    with pytest.raises(NegotiationError):
        dialer.receive_data(HEADER + NA)
    with pytest.raises(LocalProtocolError):
        dialer.receive_data(b"")


def test_ls_lists_a_collection() -> None:
    listener = MultistreamListener({"/b/1", "/a/1"})
    listener.data_to_send()
    listener.receive_data(HEADER + encode_message("ls"))
    answer = listener.data_to_send()
    # One message whose text is the framed list (the layout go and rust send).
    (inner,) = split_messages(answer)
    assert split_messages(inner) == [b"/a/1", b"/b/1"]
    assert not listener.done
    listener.receive_data(encode_message("/b/1") + b"app")
    assert listener.done and listener.selected == "/b/1" and listener.leftover == b"app"
    assert listener.data_to_send() == encode_message("/b/1")


def test_ls_with_predicate_answers_na() -> None:
    listener = MultistreamListener(lambda protocol: True)
    listener.data_to_send()
    listener.receive_data(HEADER + encode_message("ls"))
    assert listener.data_to_send() == NA
    assert not listener.done


def test_listener_never_accepts_control_messages() -> None:
    listener = MultistreamListener(lambda protocol: True)
    listener.data_to_send()
    listener.receive_data(HEADER + encode_message("na") + encode_message(""))
    assert listener.data_to_send() == NA + NA
    assert not listener.done


def test_byte_by_byte_delivery() -> None:
    dialer = MultistreamDialer(["/a/1", "/b/1"])
    listener = MultistreamListener({"/b/1"})
    for _ in range(10):
        for byte in dialer.data_to_send():
            if not listener.done:
                listener.receive_data(bytes([byte]))
        for byte in listener.data_to_send():
            if not dialer.done:
                dialer.receive_data(bytes([byte]))
    assert dialer.selected == listener.selected == "/b/1"


def test_optimistic_dialer_with_pipelined_application_data() -> None:
    dialer = MultistreamDialer(["/echo/1"])
    listener = MultistreamListener({"/echo/1"})
    # The dialer writes application data right behind its proposal, before any answer.
    listener.receive_data(dialer.data_to_send() + b"hello from dialer")
    assert listener.done
    assert listener.leftover == b"hello from dialer"
    # The listener answers and immediately writes its own first data.
    dialer.receive_data(listener.data_to_send() + b"hello from listener")
    assert dialer.done and dialer.selected == "/echo/1"
    assert dialer.leftover == b"hello from listener"


def test_optimistic_dialer_refused() -> None:
    dialer = MultistreamDialer(["/echo/1"])
    listener = MultistreamListener({"/other/1"})
    listener.receive_data(dialer.data_to_send() + b"data sent too early")
    with pytest.raises(NegotiationError):
        dialer.receive_data(listener.data_to_send())


def test_leftover_split_across_calls() -> None:
    dialer = MultistreamDialer(["/a/1"])
    answer = HEADER + encode_message("/a/1") + b"xyz"
    dialer.receive_data(answer[:5])
    dialer.receive_data(answer[5:-2])
    assert dialer.done and dialer.leftover == b"x"
    with pytest.raises(LocalProtocolError):
        dialer.receive_data(b"yz")


def test_wrong_header_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="header"):
        MultistreamDialer(["/a/1"]).receive_data(encode_message("/multistream/2.0.0"))
    with pytest.raises(RemoteProtocolError, match="header"):
        MultistreamListener({"/a/1"}).receive_data(encode_message("/a/1"))


def test_echo_of_something_not_proposed() -> None:
    dialer = MultistreamDialer(["/a/1", "/b/1"])
    with pytest.raises(RemoteProtocolError, match="/b/1"):
        dialer.receive_data(HEADER + encode_message("/b/1"))


def test_oversize_message_refused_before_buffering() -> None:
    listener = MultistreamListener({"/a/1"})
    # Only the length prefix arrives: the refusal must not wait for the 2000-byte body.
    with pytest.raises(DecodeError, match="exceeds 1024"):
        listener.receive_data(HEADER + encode_uvarint(2000))
    dialer = MultistreamDialer(["/a/1"])
    with pytest.raises(DecodeError):
        dialer.receive_data(b"\xff\xff")  # a prefix too long for any allowed length


def test_largest_message_accepted() -> None:
    protocol = "/" + "p" * (MAX_MESSAGE_LENGTH - 2)
    dialer = MultistreamDialer([protocol])
    listener = MultistreamListener({protocol})
    run(dialer, listener)
    assert dialer.selected == protocol
    with pytest.raises(LocalProtocolError):
        encode_message(protocol + "p")


def test_missing_newline_is_refused() -> None:
    with pytest.raises(DecodeError, match="newline"):
        MultistreamListener({"/a/1"}).receive_data(b"\x12/multistream/1.0.0")
    with pytest.raises(DecodeError, match="newline"):
        MultistreamListener({"/a/1"}).receive_data(b"\x00")


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(DecodeError, match="UTF-8"):
        MultistreamListener({"/a/1"}).receive_data(b"\x03\xff\xfe\n")


def test_too_many_rounds() -> None:
    listener = MultistreamListener({"/yes"}, max_rounds=3)
    listener.receive_data(HEADER + b"".join(encode_message(f"/no/{i}") for i in range(3)))
    with pytest.raises(RemoteProtocolError, match="more than 3 proposals"):
        listener.receive_data(encode_message("/yes"))


def test_dialer_rounds_are_bounded_locally() -> None:
    with pytest.raises(LocalProtocolError):
        MultistreamDialer([f"/p/{i}" for i in range(33)])
    MultistreamDialer([f"/p/{i}" for i in range(32)])
    with pytest.raises(LocalProtocolError):
        MultistreamDialer(["/a", "/b"], max_rounds=1)


@pytest.mark.parametrize("bad", [[], ["na"], ["ls"], [""], ["/a\n/b"]])
def test_dialer_refuses_bad_proposals(bad: list[str]) -> None:
    with pytest.raises(LocalProtocolError):
        MultistreamDialer(bad)


def test_many_rounds_within_limit() -> None:
    protocols = [f"/p/{i}" for i in range(32)]
    dialer = MultistreamDialer(protocols)
    listener = MultistreamListener({"/p/31"})
    run(dialer, listener)
    assert dialer.selected == "/p/31"


# --- Hypothesis -------------------------------------------------------------------------

protocol_ids = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\n"),
    min_size=1,
    max_size=40,
).filter(lambda text: text not in ("na", "ls"))


@settings(max_examples=300)
@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=64))
def test_random_bytes_into_listener(data: bytes, chunk: int) -> None:
    listener = MultistreamListener({"/a/1", "/b/1"})
    try:
        for start in range(0, len(data), chunk):
            if listener.done:
                break
            listener.receive_data(data[start : start + chunk])
            assert len(listener.data_to_send()) < 4096
    except RemoteProtocolError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=64))
def test_random_bytes_into_dialer(data: bytes, chunk: int) -> None:
    dialer = MultistreamDialer(["/a/1", "/b/1"])
    try:
        for start in range(0, len(data), chunk):
            if dialer.done:
                break
            dialer.receive_data(data[start : start + chunk])
    except RemoteProtocolError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_random_bytes_behind_valid_prefix(junk: bytes, tail: bytes) -> None:
    # Valid header + junk: still only protocol errors (or success when the junk is valid).
    dialer = MultistreamDialer(["/a/1"])
    listener = MultistreamListener({"/a/1"})
    for engine in (dialer, listener):
        try:
            engine.receive_data(HEADER + junk)
            if not engine.done:
                engine.receive_data(tail)
        except RemoteProtocolError:
            pass


@settings(max_examples=200)
@given(
    st.lists(protocol_ids, min_size=1, max_size=6, unique=True),
    st.data(),
    st.binary(max_size=50),
    st.binary(max_size=50),
)
def test_split_exchange_matches_whole(
    proposals: list[str], data: st.DataObject, dialer_app: bytes, listener_app: bytes
) -> None:
    accepted = data.draw(st.sampled_from(proposals))
    # The optimistic pattern only makes sense with a single proposal.
    optimistic = len(proposals) == 1 and data.draw(st.booleans())

    # Whole-message reference run.
    reference_dialer = MultistreamDialer(proposals)
    reference_listener = MultistreamListener({accepted})
    run(reference_dialer, reference_listener)

    # The same exchange with every write cut at random points and application data
    # written as soon as each side may.
    dialer = MultistreamDialer(proposals)
    listener = MultistreamListener({accepted})
    to_listener = bytearray(dialer.data_to_send())
    pending_dialer_app, pending_listener_app = dialer_app, listener_app
    if optimistic:
        to_listener += pending_dialer_app
        pending_dialer_app = b""
    to_dialer = bytearray()
    for _ in range(10_000):  # each step moves at least one byte, so this bounds the run
        if dialer.done and listener.done:
            break
        to_listener += dialer.data_to_send()
        if dialer.done:
            to_listener += pending_dialer_app
            pending_dialer_app = b""
        to_dialer += listener.data_to_send()
        if listener.done:
            to_dialer += pending_listener_app
            pending_listener_app = b""
        for buffer, engine in ((to_listener, listener), (to_dialer, dialer)):
            if buffer and not engine.done:
                cut = data.draw(st.integers(min_value=1, max_value=len(buffer)))
                engine.receive_data(bytes(buffer[:cut]))
                del buffer[:cut]
    assert dialer.done and listener.done
    to_listener += pending_dialer_app
    to_dialer += pending_listener_app
    assert dialer.selected == listener.selected == reference_dialer.selected == accepted
    assert reference_listener.selected == accepted
    # Everything behind the negotiation reaches the other side intact and in order.
    assert listener.leftover + bytes(to_listener) == dialer_app
    assert dialer.leftover + bytes(to_dialer) == listener_app


# --- Earlier engine tests (kept from the first version of this file) ----------------------


def run_in_chunks(
    dialer: MultistreamDialer, listener: MultistreamListener, *, chunk: int | None = None
) -> None:
    """Shuttle bytes both ways until neither side has anything to say."""
    for _ in range(100):
        to_listener, to_dialer = dialer.data_to_send(), listener.data_to_send()
        if not to_listener and not to_dialer:
            return
        for data, receiver in ((to_listener, listener), (to_dialer, dialer)):
            if data and not receiver.done:
                step = chunk or len(data)
                for start in range(0, len(data), step):
                    receiver.receive_data(data[start : start + step])
    raise AssertionError("negotiation did not settle")


def test_header_and_first_proposal_bytes() -> None:
    assert encode_message(PROTOCOL_ID) == b"\x13/multistream/1.0.0\n"
    assert MultistreamDialer(["/noise"]).data_to_send() == b"\x13/multistream/1.0.0\n\x07/noise\n"


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_first_proposal_accepted(chunk: int | None) -> None:
    dialer, listener = MultistreamDialer(["/noise"]), MultistreamListener({"/noise"})
    run_in_chunks(dialer, listener, chunk=chunk)
    assert dialer.selected == listener.selected == "/noise"


def test_refused_then_accepted() -> None:
    dialer = MultistreamDialer(["/tls/1.0.0", "/noise"])
    listener = MultistreamListener({"/noise"})
    run_in_chunks(dialer, listener)
    assert dialer.selected == "/noise"


def test_nothing_in_common_raises_negotiation_error() -> None:
    dialer, listener = MultistreamDialer(["/a", "/b"]), MultistreamListener({"/c"})
    with pytest.raises(NegotiationError, match="none of"):
        run_in_chunks(dialer, listener)


def test_lazy_dialer_data_and_listener_reply_become_leftovers() -> None:
    dialer, listener = MultistreamDialer(["/echo/1.0.0"]), MultistreamListener({"/echo/1.0.0"})
    listener.receive_data(dialer.data_to_send() + b"early data")
    assert listener.selected == "/echo/1.0.0"
    assert listener.leftover == b"early data"
    dialer.receive_data(listener.data_to_send() + b"reply")
    assert dialer.selected == "/echo/1.0.0"
    assert dialer.leftover == b"reply"


def test_ls_lists_supported_protocols() -> None:
    listener = MultistreamListener(["/a", "/b"])
    listener.data_to_send()
    listener.receive_data(encode_message(PROTOCOL_ID) + encode_message("ls"))
    reply = listener.data_to_send()
    assert b"/a\n" in reply
    assert b"/b\n" in reply
    assert not listener.done


def test_callable_support_check() -> None:
    listener = MultistreamListener(lambda protocol: protocol.startswith("/x/"))
    dialer = MultistreamDialer(["/y/1", "/x/1"])
    run_in_chunks(dialer, listener)
    assert listener.selected == "/x/1"


def test_malformed_input() -> None:
    listener = MultistreamListener({"/a"})
    with pytest.raises(DecodeError, match="exceeds"):
        listener.receive_data(
            b"\xff\x7f"
        )  # a 16383-byte message announced: refused before buffering
    with pytest.raises(DecodeError, match="newline"):
        MultistreamListener({"/a"}).receive_data(b"\x03abc")
    with pytest.raises(RemoteProtocolError, match="header"):
        MultistreamListener({"/a"}).receive_data(encode_message("/not-multistream"))
    dialer = MultistreamDialer(["/a"])
    with pytest.raises(RemoteProtocolError, match="answered"):
        dialer.receive_data(encode_message(PROTOCOL_ID) + encode_message("/b"))


def test_too_many_rounds_one_at_a_time() -> None:
    listener = MultistreamListener({"/z"}, max_rounds=3)
    listener.receive_data(encode_message(PROTOCOL_ID))
    with pytest.raises(RemoteProtocolError, match="proposals"):
        for index in range(4):
            listener.receive_data(encode_message(f"/p{index}"))


@given(st.binary(max_size=300))
def test_fuzz_listener(data: bytes) -> None:
    listener = MultistreamListener({"/a"})
    with contextlib.suppress(RemoteProtocolError):
        listener.receive_data(data)


@given(st.binary(max_size=300))
def test_fuzz_dialer(data: bytes) -> None:
    dialer = MultistreamDialer(["/a", "/b"])
    with contextlib.suppress(RemoteProtocolError):
        dialer.receive_data(data)


@given(st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=10))
def test_split_points_do_not_matter(cuts: list[int]) -> None:
    dialer = MultistreamDialer(["/q", "/a"])
    listener = MultistreamListener({"/a"})
    stream = dialer.data_to_send()
    position = 0
    for cut in cuts:
        listener.receive_data(stream[position : position + cut])
        position += cut
    listener.receive_data(stream[position:])
    dialer.receive_data(listener.data_to_send())
    run_in_chunks(dialer, listener)
    assert dialer.selected == listener.selected == "/a"


# --- the fast path for a pipelined opening (one read holding header + proposal) ---------


def _feed_general(
    engine: MultistreamDialer | MultistreamListener, data: bytes
) -> tuple[object, ...]:
    """What the general message loop (the engines' base class) makes of ``data``."""
    try:
        super(type(engine), engine).receive_data(data)
    except (RemoteProtocolError, NegotiationError) as exc:
        return ("error", type(exc), str(exc), engine.data_to_send())
    if engine.done:
        return ("done", engine.selected, engine.leftover, engine.data_to_send())
    return ("pending", engine.data_to_send())


def _feed_whole(engine: MultistreamDialer | MultistreamListener, data: bytes) -> tuple[object, ...]:
    try:
        engine.receive_data(data)
    except (RemoteProtocolError, NegotiationError) as exc:
        return ("error", type(exc), str(exc), engine.data_to_send())
    if engine.done:
        return ("done", engine.selected, engine.leftover, engine.data_to_send())
    return ("pending", engine.data_to_send())


SUPPORTED = {"/echo/1.0.0", "/a/1", "ls", "na", "é/ü"}


@st.composite
def openings(draw: st.DrawFn) -> bytes:
    """Header + proposal + tail, often valid, sometimes cut, mutated or random."""
    protocol = draw(st.one_of(st.sampled_from(sorted(SUPPORTED)), protocol_ids, st.just("x" * 200)))
    data = HEADER + encode_message(protocol) + draw(st.binary(max_size=40))
    kind = draw(st.integers(min_value=0, max_value=3))
    if kind == 1:
        data = data[: draw(st.integers(min_value=0, max_value=len(data)))]
    elif kind == 2:
        position = draw(st.integers(min_value=0, max_value=len(data) - 1))
        data = data[:position] + bytes([draw(st.integers(0, 255))]) + data[position + 1 :]
    elif kind == 3:
        data = draw(st.binary(max_size=80))
    return data


@settings(max_examples=500)
@given(openings())
def test_listener_fast_path_matches_the_message_loop(data: bytes) -> None:
    whole = _feed_whole(MultistreamListener(SUPPORTED), data)
    assert whole == _feed_general(MultistreamListener(SUPPORTED), data)
    accepted = accept_pipelined_proposal(data, SUPPORTED.__contains__)
    if accepted is not None:
        protocol, answer, leftover = accepted
        assert whole == ("done", protocol, leftover, answer)
        assert match_pipelined_proposal(memoryview(data)) == (protocol, len(answer))


@settings(max_examples=500)
@given(st.sampled_from(["/echo/1.0.0", "/a/1", "é/ü"]), openings())
def test_dialer_fast_path_matches_the_message_loop(protocol: str, data: bytes) -> None:
    # The listener's answer to a lone proposal echoes the dialer's whole opening.
    answer = MultistreamDialer([protocol]).data_to_send()
    for candidate in (data, answer + data, answer[:-1] + data):
        assert _feed_whole(MultistreamDialer([protocol]), candidate) == _feed_general(
            MultistreamDialer([protocol]), candidate
        )


def test_pipelined_opening_is_accepted_in_one_step() -> None:
    data = HEADER + encode_message("/echo/1.0.0") + b"x"
    assert accept_pipelined_proposal(data, {"/echo/1.0.0"}.__contains__) == (
        "/echo/1.0.0",
        HEADER + encode_message("/echo/1.0.0"),
        b"x",
    )
    # Not supported, a control message, a two-byte length, or cut short: no fast answer.
    assert accept_pipelined_proposal(data, {"/other"}.__contains__) is None
    assert accept_pipelined_proposal(HEADER + encode_message("ls"), SUPPORTED.__contains__) is None
    long_protocol = "/" + "p" * 130
    assert match_pipelined_proposal(HEADER + encode_message(long_protocol)) is None
    assert match_pipelined_proposal(data[:-3]) is None


def test_dialer_opening_bytes_are_shared_and_checked() -> None:
    assert MultistreamDialer(["/a/1"]).data_to_send() == HEADER + encode_message("/a/1")
    with pytest.raises(LocalProtocolError):
        MultistreamDialer(["/a/1", "na"])
    with pytest.raises(LocalProtocolError):
        MultistreamDialer(["x" * MAX_MESSAGE_LENGTH])
