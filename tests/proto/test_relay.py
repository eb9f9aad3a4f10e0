"""Circuit relay v2 and DCUtR codecs, vouchers (signed envelopes) and the relay's tables."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core.envelope import open_envelope, seal
from neonet.core.errors import DecodeError, LocalProtocolError
from neonet.core.keys import Ed25519Identity
from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.core.varint import encode_uvarint
from neonet.proto.dcutr import (
    HolePunch,
    HolePunchReader,
    HolePunchType,
    ObservedAddrs,
    decode_hole_punch,
    encode_hole_punch,
    tcp_candidates,
)
from neonet.proto.relay import (
    MAX_MESSAGE_SIZE,
    VOUCHER_DOMAIN,
    VOUCHER_PAYLOAD_TYPE,
    DataBudget,
    FrameReader,
    HopMessage,
    HopType,
    Limit,
    RelayLimits,
    RelayPeer,
    RelayResources,
    Reservation,
    Status,
    StopMessage,
    StopType,
    decode_hop,
    decode_stop,
    encode_hop,
    encode_stop,
    make_voucher,
    open_voucher,
)

RELAY = Ed25519Identity.from_seed(bytes([1]) * 32)
ALICE = Ed25519Identity.from_seed(bytes([2]) * 32)
RELAY_ID = PeerId.from_public_key(RELAY.public_key)
ALICE_ID = PeerId.from_public_key(ALICE.public_key)
BOB_ID = PeerId.from_public_key(Ed25519Identity.from_seed(bytes([3]) * 32).public_key)


def frames(data: bytes, reader: FrameReader | None = None) -> list[bytes]:
    reader = reader or FrameReader()
    reader.receive_data(data)
    found = []
    while (body := reader.next_frame()) is not None:
        found.append(body)
    return found


def test_hop_round_trip() -> None:
    address = Multiaddr.from_string(f"/ip4/1.2.3.4/tcp/4001/p2p/{RELAY_ID}").to_bytes()
    message = HopMessage(
        HopType.STATUS,
        status=Status.OK,
        reservation=Reservation(expire=1_800_000_000, addrs=(address,), voucher=b"v"),
        limit=Limit(duration=120, data=1 << 17),
    )
    (body,) = frames(encode_hop(message))
    assert decode_hop(body) == message
    connect = HopMessage(HopType.CONNECT, peer=RelayPeer(ALICE_ID))
    (body,) = frames(encode_hop(connect))
    assert decode_hop(body) == connect


def test_stop_round_trip() -> None:
    message = StopMessage(StopType.CONNECT, peer=RelayPeer(BOB_ID), limit=Limit(duration=5))
    (body,) = frames(encode_stop(message))
    assert decode_stop(body) == message
    status = StopMessage(StopType.STATUS, status=Status.CONNECTION_FAILED)
    (body,) = frames(encode_stop(status))
    assert decode_stop(body) == status


def test_reserve_is_the_zero_type_on_the_wire() -> None:
    # proto3 optional: RESERVE (0) must still be sent explicitly, as other libp2ps expect.
    encoded = encode_hop(HopMessage(HopType.RESERVE))
    assert encoded == b"\x02\x08\x00"


def test_frame_reader_partial_and_leftover() -> None:
    encoded = encode_hop(HopMessage(HopType.STATUS, status=Status.OK)) + b"relayed bytes"
    reader = FrameReader()
    for index in range(len(encoded)):
        reader.receive_data(encoded[index : index + 1])
        if index == 0:
            assert reader.next_frame() is None
    assert reader.next_frame() is not None
    assert reader.take_rest() == b"relayed bytes"


def test_oversized_frames_are_refused_before_buffering() -> None:
    reader = FrameReader()
    reader.receive_data(encode_uvarint(MAX_MESSAGE_SIZE + 1))
    with pytest.raises(DecodeError, match="exceeds"):
        reader.next_frame()
    with pytest.raises(LocalProtocolError):
        encode_hop(HopMessage(HopType.CONNECT, peer=RelayPeer(ALICE_ID, (b"x" * 1000,) * 5)))


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "without a type"),
        (b"\x08\x01", "CONNECT without a peer"),
        (b"\x08\x02", "STATUS without a status"),
        (b"\x08\x07", "unknown HopMessage type"),
        (b"\x08\x02\x28\x05", "unknown relay status"),
        (b"\x08\x01\x12\x02\x0a\x00", "varint|multihash|peer ID"),
        (b"\xff", "malformed"),
    ],
)
def test_bad_hop_messages(body: bytes, error: str) -> None:
    with pytest.raises(DecodeError, match=error):
        decode_hop(body)


def test_voucher_signed_by_relay() -> None:
    voucher = make_voucher(RELAY, ALICE_ID, 1_800_000_000)
    opened = open_voucher(voucher)
    assert (opened.relay, opened.peer, opened.expiration) == (RELAY_ID, ALICE_ID, 1_800_000_000)
    # The same payload signed for another domain, by another key or tampered is refused.
    envelope = open_envelope(voucher, VOUCHER_DOMAIN, VOUCHER_PAYLOAD_TYPE)
    other_domain = seal(RELAY, "libp2p-routing-state", VOUCHER_PAYLOAD_TYPE, envelope.payload)
    with pytest.raises(DecodeError, match="signature"):
        open_voucher(other_domain)
    forged = seal(ALICE, VOUCHER_DOMAIN, VOUCHER_PAYLOAD_TYPE, envelope.payload)
    with pytest.raises(DecodeError, match="not signed by the relay"):
        open_voucher(forged)
    tampered = bytearray(voucher)
    tampered[-1] ^= 1
    with pytest.raises(DecodeError):
        open_voucher(bytes(tampered))
    with pytest.raises(DecodeError, match="payload type"):
        open_envelope(voucher, VOUCHER_DOMAIN, b"\x03\x01")


def test_reservations_expire_refresh_and_die_with_the_connection() -> None:
    resources = RelayResources(RelayLimits(reservation_ttl=100))
    assert resources.reserve(ALICE_ID, "10.0.0.1", now=0).status == Status.OK
    refreshed = resources.reserve(ALICE_ID, "10.0.0.1", now=50)
    assert refreshed.refreshed and refreshed.expires_at == 150
    assert resources.has_reservation(ALICE_ID, 149)
    assert not resources.has_reservation(ALICE_ID, 150)
    resources.reserve(ALICE_ID, "10.0.0.1", now=200)
    resources.forget_peer(ALICE_ID)
    assert not resources.has_reservation(ALICE_ID, 201)


def test_reservation_limits() -> None:
    resources = RelayResources(RelayLimits(max_reservations=2, max_reservations_per_ip=1))
    assert resources.reserve(ALICE_ID, "10.0.0.1", 0).status == Status.OK
    assert resources.reserve(BOB_ID, "10.0.0.1", 0).status == Status.RESERVATION_REFUSED
    assert resources.reserve(BOB_ID, "10.0.0.2", 0).status == Status.OK
    assert resources.reserve(RELAY_ID, "10.0.0.3", 0).status == Status.RESERVATION_REFUSED


def test_circuit_limits() -> None:
    resources = RelayResources(RelayLimits(max_circuits=2, max_circuits_per_peer=1))
    assert resources.open_circuit(BOB_ID, ALICE_ID, 0).status == Status.NO_RESERVATION
    resources.reserve(ALICE_ID, "10.0.0.1", 0)
    resources.reserve(BOB_ID, "10.0.0.2", 0)
    first = resources.open_circuit(BOB_ID, ALICE_ID, 0)
    assert first.status == Status.OK
    again = resources.open_circuit(RELAY_ID, ALICE_ID, 0)
    assert again.status == Status.RESOURCE_LIMIT_EXCEEDED
    resources.close_circuit(first.circuit_id)
    assert resources.circuit_count == 0
    assert resources.open_circuit(RELAY_ID, ALICE_ID, 0).status == Status.OK


def test_circuits_per_ip_and_rates() -> None:
    resources = RelayResources(
        RelayLimits(max_circuits_per_ip=1, circuit_rate=1.0, circuit_burst=2, reservation_burst=2)
    )
    resources.reserve(ALICE_ID, "10.0.0.1", 0)
    first = resources.open_circuit(BOB_ID, ALICE_ID, 0, "10.0.0.9")
    assert first.status == Status.OK
    # A second circuit from the same source IP (another peer) is over the per-IP cap.
    assert resources.open_circuit(RELAY_ID, ALICE_ID, 0, "10.0.0.9").status == (
        Status.RESOURCE_LIMIT_EXCEEDED
    )
    resources.close_circuit(first.circuit_id)
    # The bucket of 10.0.0.9 (burst 2) is empty now; it refills at 1 per second.
    assert resources.open_circuit(RELAY_ID, ALICE_ID, 0.5, "10.0.0.9").status == (
        Status.RESOURCE_LIMIT_EXCEEDED
    )
    assert resources.open_circuit(RELAY_ID, ALICE_ID, 1.5, "10.0.0.9").status == Status.OK
    # Reservations from one IP are rate limited too (burst 2, then 1 per second).
    assert resources.reserve(BOB_ID, "10.0.0.1", 0).status == Status.OK
    assert resources.reserve(BOB_ID, "10.0.0.1", 0).status == Status.RESOURCE_LIMIT_EXCEEDED
    assert resources.reserve(BOB_ID, "10.0.0.1", 1.0).status == Status.OK


def test_data_budget() -> None:
    budget = DataBudget(10)
    assert budget.take(4) == 4 and not budget.exhausted
    assert budget.take(10) == 6 and budget.exhausted
    assert DataBudget(0).take(1 << 30) == 1 << 30


def test_hole_punch_round_trip_skips_unknown_addresses() -> None:
    addrs = (Multiaddr.from_string("/ip4/198.51.100.7/tcp/4001"),)
    (body,) = frames(encode_hole_punch(HolePunch(HolePunchType.CONNECT, addrs)), HolePunchReader())
    assert decode_hole_punch(body) == HolePunch(HolePunchType.CONNECT, addrs)
    # An address with an unknown multiaddr code is skipped, not fatal.
    body_with_junk = body + b"\x12\x02\xff\x7f"
    assert decode_hole_punch(body_with_junk).addrs == addrs
    with pytest.raises(DecodeError, match="without a type"):
        decode_hole_punch(b"")
    with pytest.raises(DecodeError, match="type"):
        decode_hole_punch(b"\x08\x01")


def test_observed_addrs_bounded_and_confirmed() -> None:
    observed = ObservedAddrs(capacity=2, min_observers=2)
    first = Multiaddr.from_string("/ip4/198.51.100.7/tcp/4001")
    observed.record(first, ALICE_ID)
    assert observed.confirmed() == []
    observed.record(first, BOB_ID)
    assert observed.confirmed() == [first]
    observed.record(Multiaddr.from_string(f"/p2p/{RELAY_ID}/p2p-circuit"), ALICE_ID)
    assert observed.all() == [first]
    for port in (1, 2, 3):
        observed.record(Multiaddr.from_string(f"/ip4/198.51.100.7/tcp/{port}"), ALICE_ID)
    assert len(observed.all()) == 2 and first not in observed.all()
    ws = Multiaddr.from_string("/ip4/198.51.100.7/tcp/5/ws")
    assert tcp_candidates([ws, first, first]) == [first]


# --- fuzzing: whatever the bytes, the decoders raise DecodeError or return a message --------
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_decoders(body: bytes) -> None:
    for decode in (decode_hop, decode_stop, decode_hole_punch, open_voucher):
        with contextlib.suppress(DecodeError):
            decode(body)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_fuzz_frame_reader(chunks: list[bytes]) -> None:
    reader = FrameReader()
    try:
        for chunk in chunks:
            reader.receive_data(chunk)
            while (body := reader.next_frame()) is not None:
                assert len(body) <= MAX_MESSAGE_SIZE
                with contextlib.suppress(DecodeError):
                    decode_hop(body)
    except DecodeError:
        pass


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(list(Status)),
    st.integers(0, (1 << 32) - 1),
    st.integers(0, (1 << 64) - 1),
    st.lists(st.binary(min_size=1, max_size=40), max_size=5),
)
def test_fuzz_hop_round_trip(status: Status, duration: int, data: int, addrs: list[bytes]) -> None:
    message = HopMessage(
        HopType.STATUS,
        status=status,
        reservation=Reservation(expire=data, addrs=tuple(addrs)),
        limit=Limit(duration=duration, data=data),
    )
    (body,) = frames(encode_hop(message))
    assert decode_hop(body) == message
