"""Name records: normalisation, signatures, expiry, sequence and key rotation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core.errors import DecodeError
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.proto.kad_records import (
    InvalidRecordError,
    NamespacedValidator,
    PublicKeyValidator,
    public_key_record_key,
)
from neonet.proto.names import (
    NameRecord,
    NameValidator,
    Rotation,
    decode_name_record,
    name_key,
    normalise_name,
    sign_name_record,
    sign_rotation,
)

NOW = 1_700_000_000
ALICE = Ed25519Identity.from_seed(b"\x01" * 32)
MALLORY = Ed25519Identity.from_seed(b"\x02" * 32)
ALICE_NEW = Ed25519Identity.from_seed(b"\x03" * 32)
ALICE_NEWER = Ed25519Identity.from_seed(b"\x04" * 32)
VALIDATOR = NameValidator()


def _record(identity: Ed25519Identity, seq: int, **kwargs: object) -> bytes:
    expires = int(kwargs.pop("expires", NOW + 3600))  # type: ignore[call-overload]
    return sign_name_record("alice", identity, seq=seq, expires=expires, **kwargs).encode()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("alice", "alice"),
        ("Alice", "alice"),
        ("ALICE", "alice"),
        ("bob_2-x", "bob_2-x"),
        ("ﬁsh", "fish"),
    ],
)
def test_look_alikes_normalise_to_one_name(raw: str, normal: str) -> None:
    assert normalise_name(raw) == normal
    assert name_key(raw) == b"/neonet-name/" + normal.encode()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a" * 64,
        "\u0430lice",
        "\uff21\uff2c\uff29\uff23\uff25",
        "al ice",
        "-alice",
        "alice_",
        "al.ice",
        "ali\u0301ce",
    ],
)
def test_names_outside_the_charset_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"name|characters"):
        normalise_name(bad)


def test_a_signed_record_validates_and_round_trips() -> None:
    value = _record(ALICE, 1)
    VALIDATOR.validate(name_key("alice"), value, NOW)
    record = decode_name_record(value)
    assert record.name == "alice" and record.seq == 1
    assert record.peer_id == PeerId.from_public_key(ALICE.public_key)
    assert record.encode() == value


def test_bad_records_are_refused_with_a_reason() -> None:
    key = name_key("alice")
    value = _record(ALICE, 1)
    with pytest.raises(InvalidRecordError, match="another name"):
        VALIDATOR.validate(name_key("bob"), value, NOW)
    with pytest.raises(InvalidRecordError, match="expired"):
        VALIDATOR.validate(key, _record(ALICE, 1, expires=NOW - 1), NOW)
    tampered = bytearray(value)
    tampered[-1] ^= 1
    with pytest.raises(InvalidRecordError, match="signature"):
        VALIDATOR.validate(key, bytes(tampered), NOW)
    with pytest.raises(InvalidRecordError, match="malformed"):
        VALIDATOR.validate(key, b"\x80", NOW)
    # A record signed by one key but claiming another's public key.
    record = decode_name_record(value)
    forged = NameRecord(
        record.name, MALLORY.public_key.to_protobuf(), 1, record.expires, (), record.signature
    )
    with pytest.raises(InvalidRecordError, match="signature"):
        VALIDATOR.validate(key, forged.encode(), NOW)


def test_higher_seq_from_the_same_key_wins() -> None:
    key = name_key("alice")
    old, new = _record(ALICE, 1), _record(ALICE, 2)
    assert VALIDATOR.select(key, [old, new]) == 1
    assert VALIDATOR.select(key, [new, old]) == 0


def test_a_different_key_cannot_take_a_name() -> None:
    key = name_key("alice")
    assert VALIDATOR.select(key, [_record(ALICE, 1), _record(MALLORY, 99)]) == 0


def test_rotation_signed_by_the_current_key_hands_the_name_over() -> None:
    key = name_key("alice")
    link = sign_rotation("alice", ALICE, ALICE_NEW.public_key)
    rotated = _record(ALICE_NEW, 2, rotations=(link,))
    VALIDATOR.validate(key, rotated, NOW)
    assert VALIDATOR.select(key, [_record(ALICE, 1), rotated]) == 1
    # Two rotations in a row: a node that still holds the first record accepts the third.
    link2 = sign_rotation("alice", ALICE_NEW, ALICE_NEWER.public_key)
    twice = _record(ALICE_NEWER, 3, rotations=(link, link2))
    VALIDATOR.validate(key, twice, NOW)
    assert VALIDATOR.select(key, [_record(ALICE, 1), twice]) == 1
    # The rotation does not win over a newer record of the current key.
    assert VALIDATOR.select(key, [_record(ALICE, 5), rotated]) == 0


def test_forged_rotations_are_refused() -> None:
    key = name_key("alice")
    # Mallory signs a "rotation" from Alice's key with its own key.
    fake = Rotation(
        ALICE.public_key.to_protobuf(),
        MALLORY.public_key.to_protobuf(),
        MALLORY.sign(
            Rotation.signed_bytes(
                "alice", ALICE.public_key.to_protobuf(), MALLORY.public_key.to_protobuf()
            )
        ),
    )
    with pytest.raises(InvalidRecordError, match="rotation signature"):
        VALIDATOR.validate(key, _record(MALLORY, 2, rotations=(fake,)), NOW)
    # A real link to another key cannot be reused by Mallory.
    link = sign_rotation("alice", ALICE, ALICE_NEW.public_key)
    with pytest.raises(InvalidRecordError, match="does not end"):
        VALIDATOR.validate(key, _record(MALLORY, 2, rotations=(link,)), NOW)
    # A link for another name does not verify for this one.
    other = sign_rotation("bob", ALICE, ALICE_NEW.public_key)
    with pytest.raises(InvalidRecordError, match="rotation signature"):
        VALIDATOR.validate(key, _record(ALICE_NEW, 2, rotations=(other,)), NOW)


@settings(max_examples=400)
@given(st.binary(max_size=400))
def test_decoder_fuzz(data: bytes) -> None:
    try:
        record = decode_name_record(data)
    except DecodeError:
        return
    with pytest.raises(InvalidRecordError):
        VALIDATOR.validate(name_key("alice"), record.encode(), NOW)


def test_namespaced_validator_dispatch_and_pk_records() -> None:
    validator = NamespacedValidator({"pk": PublicKeyValidator(), "neonet-name": VALIDATOR})
    pk_key = public_key_record_key(PeerId.from_public_key(ALICE.public_key))
    validator.validate(pk_key, ALICE.public_key.to_protobuf(), NOW)
    with pytest.raises(InvalidRecordError, match="does not belong"):
        validator.validate(pk_key, MALLORY.public_key.to_protobuf(), NOW)
    with pytest.raises(InvalidRecordError, match="no validator"):
        validator.validate(b"/other/x", b"v", NOW)
    with pytest.raises(InvalidRecordError, match="not namespaced"):
        validator.validate(b"plain", b"v", NOW)
    with pytest.raises(InvalidRecordError, match="exceeds"):
        validator.validate(pk_key, b"x" * 70_000, NOW)
