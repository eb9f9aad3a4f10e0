from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neonet.core.errors import DecodeError, NegotiationError, RemoteProtocolError
from neonet.proto.multistream import (
    PROTOCOL_ID,
    MultistreamDialer,
    MultistreamListener,
    encode_message,
)


def run(
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


def test_header_bytes_match_the_spec() -> None:
    assert encode_message(PROTOCOL_ID) == b"\x13/multistream/1.0.0\n"
    assert MultistreamDialer(["/noise"]).data_to_send() == b"\x13/multistream/1.0.0\n\x07/noise\n"


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_first_proposal_accepted(chunk: int | None) -> None:
    dialer, listener = MultistreamDialer(["/noise"]), MultistreamListener({"/noise"})
    run(dialer, listener, chunk=chunk)
    assert dialer.selected == listener.selected == "/noise"


def test_refused_then_accepted() -> None:
    dialer = MultistreamDialer(["/tls/1.0.0", "/noise"])
    listener = MultistreamListener({"/noise"})
    run(dialer, listener)
    assert dialer.selected == "/noise"


def test_nothing_in_common_raises_negotiation_error() -> None:
    dialer, listener = MultistreamDialer(["/a", "/b"]), MultistreamListener({"/c"})
    with pytest.raises(NegotiationError, match="none of"):
        run(dialer, listener)


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
    run(dialer, listener)
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


def test_too_many_rounds() -> None:
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
    run(dialer, listener)
    assert dialer.selected == listener.selected == "/a"
