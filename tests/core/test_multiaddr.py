from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neonet.core.errors import DecodeError
from neonet.core.keys import Ed25519Identity
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId

PEER = str(PeerId.from_public_key(Ed25519Identity.from_seed(bytes(32)).public_key))

ADDRESSES = [
    "/ip4/127.0.0.1/tcp/4001",
    "/ip6/::1/tcp/0/ws",
    "/ip4/10.0.0.1/tcp/443/wss",
    "/dns/example.com/tcp/443/tls/ws",
    "/dns4/example.com/udp/53",
    "/dns6/example.com/tcp/1",
    f"/ip4/127.0.0.1/tcp/1/p2p/{PEER}",
    f"/ip4/1.2.3.4/tcp/1/p2p/{PEER}/p2p-circuit/p2p/{PEER}",
    "/ip4/1.2.3.4/udp/1/webrtc-direct/certhash/uEiDDq4_xNyDorZBH3TlGazyJdOWSwvo4PUo5YHFMrvDE8g",
    f"/ip4/1.2.3.4/tcp/1/p2p/{PEER}/p2p-circuit/webrtc",
    "/ip4/1.2.3.4/udp/1/quic-v1/webtransport",
]


@pytest.mark.parametrize("text", ADDRESSES)
def test_text_and_binary_round_trip(text: str) -> None:
    address = Multiaddr.from_string(text)
    assert str(address) == text
    assert Multiaddr.from_bytes(address.to_bytes()) == address


def test_known_binary_form() -> None:
    # /ip4/127.0.0.1/tcp/4001: code 4, 4 bytes, code 6, port big-endian.
    assert Multiaddr.from_string("/ip4/127.0.0.1/tcp/4001").to_bytes() == bytes.fromhex(
        "047f000001060fa1"
    )


def test_peer_id_helpers_and_ipfs_alias() -> None:
    address = Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/1/ipfs/{PEER}")
    assert str(address.peer_id()) == PEER
    assert str(address.without_peer_id()) == "/ip4/127.0.0.1/tcp/1"
    assert address.without_peer_id().with_peer_id(PeerId.from_string(PEER)) == address
    assert address.value_for("tcp") == "1"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "ip4/1.2.3.4",
        "/ip4/256.0.0.1",
        "/tcp/99999",
        "/tcp",
        "/nope/1",
        "/ip4/1.2.3.4/tcp/x",
        "/p2p/notapeer",
    ],
)
def test_malformed_text_raises_decode_error(bad: str) -> None:
    with pytest.raises(DecodeError):
        Multiaddr.from_string(bad)


@given(st.binary(max_size=120))
def test_fuzz_binary_decoder(data: bytes) -> None:
    try:
        address = Multiaddr.from_bytes(data)
    except DecodeError:
        return
    assert address.to_bytes() == data
    assert Multiaddr.from_string(str(address)) == address


@given(st.text(max_size=120))
def test_fuzz_text_decoder(text: str) -> None:
    with contextlib.suppress(DecodeError):
        Multiaddr.from_string(text)
