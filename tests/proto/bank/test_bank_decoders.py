"""Every NeoBankof decoder refuses non-canonical input: it either raises ``DecodeError`` or
returns a value whose encoding is exactly the input (Hypothesis fuzzing)."""

from __future__ import annotations

from collections.abc import Callable

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core.errors import DecodeError
from neonet.proto.bank.messages import (
    Certificate,
    ClaimPayload,
    Committee,
    FraudProof,
    OfflinePayment,
    PursePayload,
    Receipt,
    ReceivePayload,
    RedeemPayload,
    RefundPayload,
    Spend,
    TransferPayload,
)
from neonet.proto.bank.validator import Vote, assemble_certificate
from neonet.proto.bank.wallet import PurseWallet
from tests.proto.bank.world import World, batch_vote, identity, key_of


def _samples() -> dict[str, tuple[Callable[[bytes], object], bytes]]:
    world = World()
    alice = world.funded("alice", 500)
    bob = world.wallet("bob")
    purse_key = identity("fuzz-purse")
    terms = PursePayload(key_of(purse_key), 50, 4, 1000)
    purse_cert = world.commit(alice, alice.open_purse(200, terms))
    payment = PurseWallet(purse_cert, purse_key.sign).pay(bob.account, 20, now=3)
    other = PurseWallet(purse_cert, purse_key.sign).pay(alice.account, 10, now=4)
    receipt = Receipt(payment.spend.digest(), bob.account, 5).signed(identity("r").sign)
    # A certificate of batch votes (paths of 1 and 2 nodes) next to a direct one.
    block = alice.transfer(bob.account, 5)
    earlier = [c.block for c in alice.recent[-2:]]
    votes = [batch_vote(world.validators[i], block, earlier[:i]) for i in range(3)]
    batched = assemble_certificate(
        block, [v for v in votes if isinstance(v, Vote)], world.committee
    )
    assert batched is not None and [len(v) for v in batched.votes] == [2, 4, 4]
    return {
        "batch certificate": (Certificate.decode, batched.encode()),
        "transfer": (TransferPayload.decode, TransferPayload(bob.account, b"memo").encode()),
        "receive": (ReceivePayload.decode, ReceivePayload(alice.account, 3, bytes(32)).encode()),
        "purse": (PursePayload.decode, terms.encode()),
        "spend": (Spend.decode, payment.spend.encode()),
        "redeem": (RedeemPayload.decode, RedeemPayload(payment.spend).encode()),
        "claim": (ClaimPayload.decode, ClaimPayload(payment.spend, 2, 7).encode()),
        "refund": (RefundPayload.decode, RefundPayload(payment.spend.purse_id).encode()),
        "committee": (Committee.decode, world.committee.encode()),
        "certificate": (Certificate.decode, purse_cert.encode()),
        "receipt": (Receipt.decode, receipt.encode()),
        "payment": (OfflinePayment.decode, payment.encode()),
        "proof": (
            FraudProof.decode,
            FraudProof.of_spends(payment.spend, other.spend, purse_cert).encode(),
        ),
    }


SAMPLES = _samples()


def _encode_again(value: object) -> bytes:
    return value.encode()  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_round_trip(name: str) -> None:
    decode, data = SAMPLES[name]
    assert _encode_again(decode(data)) == data


def _check(decode: Callable[[bytes], object], data: bytes) -> None:
    try:
        value = decode(data)
    except DecodeError:
        return
    assert _encode_again(value) == data


@pytest.mark.parametrize("name", sorted(SAMPLES))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mutations_are_refused_or_canonical(name: str, data: st.DataObject) -> None:
    decode, sample = SAMPLES[name]
    mutated = bytearray(sample)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        position = data.draw(st.integers(0, max(len(mutated) - 1, 0)))
        if action == "flip" and mutated:
            mutated[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del mutated[position:]
        elif action == "insert":
            mutated[position:position] = data.draw(st.binary(min_size=1, max_size=3))
        elif mutated:
            del mutated[position]
    _check(decode, bytes(mutated))


@pytest.mark.parametrize("name", sorted(SAMPLES))
@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=300))
def test_random_bytes_are_refused_or_canonical(name: str, raw: bytes) -> None:
    _check(SAMPLES[name][0], raw)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_non_canonical_forms_are_refused(name: str) -> None:
    decode, sample = SAMPLES[name]
    value = cbor2.loads(sample)
    # A non-shortest array head, an indefinite-length array and a trailing byte.
    head = sample[0]
    assert 0x80 <= head <= 0x97
    long_head = bytes([0x98, head - 0x80]) + sample[1:]
    indefinite = b"\x9f" + sample[1:] + b"\xff"
    for bad in (long_head, indefinite, sample + b"\x00"):
        with pytest.raises(DecodeError):
            decode(bad)
    assert cbor2.dumps(value) == sample


def _wire_samples() -> list[bytes]:
    from neonet.proto.bank import wire

    _, certificate = SAMPLES["certificate"]
    decoded = Certificate.decode(certificate)
    _, proof = SAMPLES["proof"]
    # A certificate of batch votes (well-formed; its signatures are not checked here).
    batched = Certificate(
        decoded.block,
        ((0, bytes(64), 1, bytes(32)), (1, bytes(64)), (2, bytes(64), 2, bytes(64))),
    )
    messages = [
        wire.sign_request(decoded.block, [decoded]),
        wire.sign_batch_request([(decoded.block, [batched]), (decoded.block, [decoded])]),
        wire.certify_request(decoded),
        wire.proof_request(FraudProof.decode(proof)),
        wire.heads_request(b"", 10),
        wire.range_request(bytes(32), 0, 5),
        wire.incoming_request(bytes(32)),
        wire.purse_request(bytes(32), 3),
    ]
    return [wire.frame(message) for message in messages]


WIRE_SAMPLES = _wire_samples()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_wire_requests_are_refused_or_parsed(data: st.DataObject) -> None:
    from neonet.proto.bank import wire

    sample = bytearray(data.draw(st.sampled_from(WIRE_SAMPLES)))
    for _ in range(data.draw(st.integers(0, 3))):
        position = data.draw(st.integers(0, len(sample) - 1))
        sample[position] ^= 1 << data.draw(st.integers(0, 7))
    chunks = data.draw(st.integers(1, 4))
    reader = wire.FrameReader(max_frame=4096)
    step = max(1, len(sample) // chunks)
    try:
        for offset in range(0, len(sample), step):
            reader.receive_data(bytes(sample[offset : offset + step]))
        message = reader.next_message()
        if message is not None:
            request = wire.parse_request(message)
            assert request.kind in (
                wire.SIGN,
                wire.CERTIFY,
                wire.PROOF,
                wire.HEADS,
                wire.RANGE,
                wire.INCOMING,
                wire.PURSE,
                wire.SIGN_BATCH,
            )
            if request.kind == wire.SIGN_BATCH:
                assert 0 < len(request.batch) <= wire.MAX_BATCH
    except DecodeError:
        pass


def test_the_wire_samples_parse() -> None:
    from neonet.proto.bank import wire

    kinds = []
    for sample in WIRE_SAMPLES:
        reader = wire.FrameReader()
        reader.receive_data(sample)
        message = reader.next_message()
        assert message is not None
        kinds.append(wire.parse_request(message).kind)
    assert wire.SIGN_BATCH in kinds  # the fuzzer starts from a valid batch request


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_batch_answers_are_refused_or_parsed(data: st.DataObject) -> None:
    from neonet.core import cbor
    from neonet.proto.bank import wire

    refused = [wire.REFUSED, "no", None, None]
    answer = [wire.SIGN_BATCH, [[wire.VOTE, 1, 0], refused, [wire.VOTE, 1, 1]], bytes(64)]
    sample = bytearray(cbor.encode(answer))
    for _ in range(data.draw(st.integers(0, 3))):
        position = data.draw(st.integers(0, len(sample) - 1))
        sample[position] ^= 1 << data.draw(st.integers(0, 7))
    count = data.draw(st.integers(0, 4))
    try:
        message = cbor.decode(bytes(sample))
        if type(message) is not list:
            return
        answers, signature = wire.parse_batch_answer(message, count)
    except DecodeError:
        return
    assert len(answers) == count
    positions = [a[2] for a in answers if a[0] == wire.VOTE]
    assert positions == list(range(len(positions)))
    assert (signature is None) == (not positions)
    assert signature is None or len(signature) == 64


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_purse_status_answers_are_refused_or_parsed(data: st.DataObject) -> None:
    from neonet.core import cbor
    from neonet.proto.bank import wire

    spend = Spend.decode(SAMPLES["spend"][1])
    status = wire.PurseStatus(bytes(32), 4, 1, 70, 30, False, spend)
    sample = bytearray(cbor.encode([wire.PURSE, status.to_value()]))
    for _ in range(data.draw(st.integers(0, 3))):
        position = data.draw(st.integers(0, len(sample) - 1))
        sample[position] ^= 1 << data.draw(st.integers(0, 7))
    try:
        message = cbor.decode(bytes(sample))
        if type(message) is not list:
            return
        parsed = wire.parse_purse_status(message)
    except DecodeError:
        return
    assert parsed is None or cbor.encode([wire.PURSE, parsed.to_value()]) == bytes(sample)


def test_wire_frame_size_is_bounded() -> None:
    from neonet.core.varint import encode_uvarint
    from neonet.proto.bank import wire

    reader = wire.FrameReader(max_frame=100)
    reader.receive_data(encode_uvarint(101))
    with pytest.raises(DecodeError, match="exceeds"):
        reader.next_message()
    flood = wire.FrameReader(max_frame=100)
    with pytest.raises(DecodeError):
        flood.receive_data(bytes(1000))
