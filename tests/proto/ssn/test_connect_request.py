"""Connect requests carried in signals (proto/ssn/connect_request.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core import cbor
from neonet.core.errors import DecodeError, RemoteProtocolError
from neonet.core.multiaddr import Multiaddr
from neonet.proto.ssn.connect_request import (
    MAX_ADDRS,
    PREFIX,
    VERSION,
    ConnectRequest,
    decode_connect_request,
    encode_connect_request,
    is_connect_request,
)

ADDRS = (
    Multiaddr.from_string("/ip4/192.0.2.12/tcp/4001"),
    Multiaddr.from_string("/ip6/::1/tcp/4002/ws"),
)


def test_round_trip_and_recognition() -> None:
    payload = encode_connect_request(ConnectRequest(ADDRS))
    assert is_connect_request(payload)
    assert decode_connect_request(payload) == ConnectRequest(ADDRS)
    # What applications send (an SDP offer, JSON) is never taken for one.
    for text in (b"v=0\r\no=- 0 0 IN IP4 127.0.0.1", b'{"type": "offer"}', b""):
        assert not is_connect_request(text)
    # Addresses beyond MAX_ADDRS are not sent.
    many = encode_connect_request(ConnectRequest(ADDRS[:1] * (MAX_ADDRS + 3)))
    assert len(decode_connect_request(many).addrs) == MAX_ADDRS


def test_malformed_or_other_versions_are_the_peers_fault() -> None:
    raw = [a.to_bytes() for a in ADDRS]
    cases = [
        PREFIX + b"\xff",  # not CBOR
        PREFIX + cbor.encode([VERSION]),  # wrong shape
        PREFIX + cbor.encode([VERSION, [b"\x04\x01"]]),  # truncated address
        PREFIX + cbor.encode([VERSION, [raw[0]] * (MAX_ADDRS + 1)]),  # too many
        PREFIX + cbor.encode([VERSION, ["text"]]),
        PREFIX + cbor.encode([VERSION + 1, raw]),  # a version we do not speak
        PREFIX + cbor.encode([True, raw]),
    ]
    for payload in cases:
        with pytest.raises(RemoteProtocolError):
            decode_connect_request(payload)
    with pytest.raises(DecodeError):
        decode_connect_request(b"v=0")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_any_tail_decodes_or_is_a_remote_error(tail: bytes) -> None:
    try:
        request = decode_connect_request(PREFIX + tail)
    except RemoteProtocolError:
        return
    assert len(request.addrs) <= MAX_ADDRS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=MAX_ADDRS + 2), st.integers(0, 3))
def test_fuzz_well_formed_cbor_with_arbitrary_addresses(addrs: list[bytes], version: int) -> None:
    try:
        request = decode_connect_request(PREFIX + cbor.encode([version, addrs]))
    except RemoteProtocolError:
        return
    assert version == VERSION and len(request.addrs) == len(addrs)
    assert [a.to_bytes() for a in request.addrs] == addrs
