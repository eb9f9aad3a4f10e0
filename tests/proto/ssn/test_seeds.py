"""The operator-signed SSN seed list: round trip, forgery, expiry, limits, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core import cbor
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.proto.ssn.seeds import (
    SeedEntry,
    SeedListError,
    make_seed_list,
    newer,
    verify_seed_list,
)

OPERATOR = Ed25519Identity.from_seed(bytes(range(32)))
OPERATOR_ID = PeerId.from_public_key(OPERATOR.public_key)


def _member(i: int) -> SeedEntry:
    identity = Ed25519Identity.from_seed(bytes([i + 1]) * 32)
    peer = PeerId.from_public_key(identity.public_key)
    region = "eu" if i % 2 else "us"
    return SeedEntry(peer.to_bytes(), region, (f"/ip4/127.0.0.1/tcp/{5000 + i}",))


SEEDS = make_seed_list("test", 7, [_member(i) for i in range(6)], issued_at=1_000, lifetime=500)


def test_a_signed_list_verifies_and_round_trips() -> None:
    data = SEEDS.sign(OPERATOR)
    assert verify_seed_list(data, OPERATOR_ID, now=1_200) == SEEDS
    assert [e.region for e in SEEDS.in_region_first("eu")][:3] == ["eu", "eu", "eu"]
    assert SEEDS.regions() == ["eu", "us"]
    assert SEEDS.entry(_member(3).member_id) == _member(3)


def test_another_operators_list_is_refused() -> None:
    mallory = Ed25519Identity.from_seed(b"\x99" * 32)
    with pytest.raises(SeedListError, match="expected operator"):
        verify_seed_list(SEEDS.sign(mallory), OPERATOR_ID, now=1_200)


def test_a_tampered_list_is_refused() -> None:
    body, key, signature = cbor.decode(SEEDS.sign(OPERATOR))  # type: ignore[misc]
    body[2] = 8  # bump the serial without the operator
    forged = cbor.encode([body, key, signature])
    with pytest.raises(SeedListError, match="signature"):
        verify_seed_list(forged, OPERATOR_ID, now=1_200)


def test_an_expired_list_is_refused() -> None:
    with pytest.raises(SeedListError, match="expired"):
        verify_seed_list(SEEDS.sign(OPERATOR), OPERATOR_ID, now=1_500)


def test_newer_serials_replace_older_ones_of_the_same_network() -> None:
    later = make_seed_list("test", 8, SEEDS.entries, issued_at=1_100)
    other = make_seed_list("elsewhere", 99, SEEDS.entries, issued_at=1_100)
    assert newer(None, SEEDS)
    assert newer(SEEDS, later) and not newer(later, SEEDS)
    assert not newer(SEEDS, other)


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([], "1 to"),
        ([_member(0), _member(0)], "twice"),
        ([SeedEntry(b"\x12\x05abc", "eu", ("/ip4/1.2.3.4/tcp/1",))], "peer ID"),
        ([SeedEntry(_member(0).member_id, "", ("/ip4/1.2.3.4/tcp/1",))], "region"),
        ([SeedEntry(_member(0).member_id, "eu", ())], "addresses"),
    ],
)
def test_bad_lists_cannot_even_be_made(entries: list[SeedEntry], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_seed_list("test", 1, entries, issued_at=0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_is_a_seed_list_error(data: bytes) -> None:
    with pytest.raises(SeedListError):
        verify_seed_list(data, OPERATOR_ID, now=0)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_single_byte_change_is_refused(data: st.DataObject) -> None:
    signed = bytearray(SEEDS.sign(OPERATOR))
    position = data.draw(st.integers(0, len(signed) - 1))
    signed[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(SeedListError):
        verify_seed_list(bytes(signed), OPERATOR_ID, now=1_200)
