"""The SSN client and federation codecs, presence records, and the record store rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core import cbor
from neonet.core.errors import DecodeError, RemoteProtocolError
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.proto.kad_records import InvalidRecordError
from neonet.proto.names import name_key, sign_name_record, sign_rotation
from neonet.proto.ssn import client_protocol as cp
from neonet.proto.ssn import federation as fed

NOW = 1_800_000_000
ALICE = Ed25519Identity.from_seed(b"a" * 32)
MALLORY = Ed25519Identity.from_seed(b"m" * 32)
SSN = PeerId.from_public_key(Ed25519Identity.from_seed(b"s" * 32).public_key).to_bytes()


def _peer(identity: Ed25519Identity) -> bytes:
    return PeerId.from_public_key(identity.public_key).to_bytes()


def _presence(identity: Ed25519Identity = ALICE, seq: int = 1) -> bytes:
    record = cp.sign_presence(identity, SSN, ["/ip4/127.0.0.1/tcp/4001"], seq=seq, expires=NOW + 60)
    return record.encode()


MESSAGES: list[cp.ClientMessage] = [
    cp.Challenge(b"n" * 32, SSN),
    cp.Register(7, b"presence", b"p" * 64, None),
    cp.Register(8, b"presence", b"p" * 64, b"name"),
    cp.Registered(7),
    cp.Lookup(9, "alice"),
    cp.Lookup(10, SSN),
    cp.Found(9, b"presence", None),
    cp.Signal(11, SSN, b"offer"),
    cp.SignalSent(11, cp.SignalStatus.QUEUED),
    cp.Error(12, cp.ErrorCode.MAILBOX_FULL, "full"),
    cp.Incoming(SSN, b"answer"),
]


@pytest.mark.parametrize("message", MESSAGES)
def test_client_messages_round_trip(message: cp.ClientMessage) -> None:
    assert cp.decode_message(cp.encode_message(message)) == message


FED_MESSAGES: list[fed.FederationMessage] = [
    fed.Store(1, SSN, b"presence", None),
    fed.FederationLookup(2, b"/neonet-name/alice"),
    fed.Forward(3, SSN, SSN, b"payload"),
    fed.Stored(1),
    fed.FederationFound(2, None, None),
    fed.FederationFound(2, b"p", b"n"),
    fed.Forwarded(3, cp.SignalStatus.DELIVERED),
    fed.FederationError(4, cp.ErrorCode.OFFLINE, "away"),
]


@pytest.mark.parametrize("message", FED_MESSAGES)
def test_federation_messages_round_trip(message: fed.FederationMessage) -> None:
    assert fed.decode_message(fed.encode_message(message)) == message


def test_non_canonical_and_malformed_messages_are_refused() -> None:
    good = cp.encode_message(cp.Registered(1))
    # The same array with a non-shortest integer head for the request ID.
    assert good == bytes([0x83, 0x01, 0x02, 0x01])
    for bad in (
        bytes([0x83, 0x01, 0x02, 0x18, 0x01]),  # 1 encoded in two bytes
        cbor.encode([2, 2, 1]),  # unknown version
        cbor.encode([1, 99, 1]),  # unknown kind
        cbor.encode([1, 2, 1, 0]),  # wrong arity
        cbor.encode([1, 7, 1, 999, "x"]),  # unknown error code
        cbor.encode([1, 5, 1, b"not a peer id", b""]),
        cbor.encode([1, 3, 1, ""]),  # empty name query
        good + b"\x00",  # trailing bytes
        cbor.encode([1, 0, 1, b"n" * 32, SSN]),  # a CHALLENGE with a request ID
    ):
        with pytest.raises(DecodeError):
            cp.decode_message(bad)
    with pytest.raises(DecodeError):
        fed.decode_message(cbor.encode([1, 0, 1, b"", b"p", None]))  # empty key


def test_frames_are_split_and_capped() -> None:
    decoder = cp.FrameDecoder(max_frame=100)
    data = cp.frame(b"abc") + cp.frame(b"") + cp.frame(b"x" * 100)
    assert decoder.feed(data[:2]) == []
    assert decoder.feed(data[2:]) == [b"abc", b"", b"x" * 100]
    assert decoder.buffered == 0
    with pytest.raises(RemoteProtocolError):
        decoder.feed(cp.frame(b"y" * 101)[:2])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoders_never_crash(data: bytes) -> None:
    for decode in (cp.decode_message, fed.decode_message, cp.decode_presence):
        try:
            decoded = decode(data)
        except DecodeError:
            continue
        assert decoded is not None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8), st.integers(min_value=1, max_value=64))
def test_frame_decoder_reassembles_any_split(bodies: list[bytes], chunk: int) -> None:
    stream = b"".join(cp.frame(body) for body in bodies)
    decoder = cp.FrameDecoder()
    out: list[bytes] = []
    for start in range(0, len(stream), chunk):
        out.extend(decoder.feed(stream[start : start + chunk]))
    assert out == bodies


def test_presence_signature_proof_and_expiry() -> None:
    record = cp.decode_presence(_presence())
    cp.verify_presence(record, NOW)
    with pytest.raises(DecodeError, match="expired"):
        cp.verify_presence(record, NOW + 61)
    nonce = b"n" * 32
    proof = ALICE.sign(cp.proof_bytes(nonce, SSN, record.encode()))
    cp.verify_proof(record, proof, nonce, SSN)
    with pytest.raises(DecodeError):
        cp.verify_proof(record, proof, b"o" * 32, SSN)  # another connection's nonce
    forged = cp.PresenceRecord(
        record.peer_id, record.ssn_id, ("/ip4/6.6.6.6/tcp/1",), 2, record.expires, record.signature
    )
    with pytest.raises(DecodeError, match="signature"):
        cp.verify_presence(forged, NOW)


def test_record_store_keeps_newest_and_protects_names() -> None:
    store = fed.RecordStore(max_entries=3)
    alice_name = sign_name_record("alice", ALICE, seq=1, expires=NOW + 60).encode()
    key = name_key("alice")
    assert store.put(key, _presence(seq=2), alice_name, NOW)
    assert not store.put(key, _presence(seq=1), alice_name, NOW)  # older: kept ours
    assert store.put(_peer(ALICE), _presence(seq=3), None, NOW)
    entry = store.get(_peer(ALICE), NOW)
    assert entry is not None and entry.presence.seq == 3

    mallory_name = sign_name_record("alice", MALLORY, seq=9, expires=NOW + 60).encode()
    with pytest.raises(fed.NameTakenError):
        store.put(key, _presence(MALLORY, seq=9), mallory_name, NOW)
    # A rotation signed by the current key hands the name over.
    link = sign_rotation("alice", ALICE, MALLORY.public_key)
    rotated = sign_name_record("alice", MALLORY, seq=10, expires=NOW + 60, rotations=[link])
    assert store.put(key, _presence(MALLORY, seq=10), rotated.encode(), NOW)

    with pytest.raises(InvalidRecordError):  # presence under someone else's key
        store.put(_peer(MALLORY), _presence(seq=4), None, NOW)
    with pytest.raises(InvalidRecordError):  # a name key without the name record
        store.put(name_key("bob"), _presence(seq=4), None, NOW)
    with pytest.raises(InvalidRecordError):  # name record of another peer than the presence
        store.put(key, _presence(seq=11), rotated.encode(), NOW)
    assert store.put(_peer(MALLORY), _presence(MALLORY, seq=1), None, NOW)
    bob = Ed25519Identity.from_seed(b"b" * 32)
    with pytest.raises(fed.StoreFullError):
        store.put(_peer(bob), _presence(bob), None, NOW)
    assert store.get(_peer(ALICE), NOW + 61) is None  # expired
    assert store.put(_peer(bob), _presence(bob), None, NOW)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(range(len(MESSAGES) + len(FED_MESSAGES))), st.data())
def test_mutated_valid_messages_decode_or_fail_cleanly(index: int, data: st.DataObject) -> None:
    if index < len(MESSAGES):
        encoded, decode = cp.encode_message(MESSAGES[index]), cp.decode_message
    else:
        encoded, decode = (
            fed.encode_message(FED_MESSAGES[index - len(MESSAGES)]),
            fed.decode_message,
        )
    position = data.draw(st.integers(0, len(encoded) - 1))
    byte = data.draw(st.integers(0, 255))
    mutated = encoded[:position] + bytes([byte]) + encoded[position + 1 :]
    try:
        decoded = decode(mutated)
    except DecodeError:
        return
    # Whatever decodes re-encodes to exactly the input (canonical form).
    encode = cp.encode_message if index < len(MESSAGES) else fed.encode_message
    assert encode(decoded) == mutated  # type: ignore[arg-type]
