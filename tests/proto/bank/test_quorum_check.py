"""The certificate check (``QuorumCheck``, docs/bank.md "Committee, votes, certificates"):
votes naming no committee member invalidate a certificate, short certificates cost no
work, and a signed vote batch takes no further vote, before anything is recorded."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from neonet.core import backend
from neonet.core.errors import DecodeError
from neonet.core.ledger import decode_block
from neonet.proto.bank.messages import (
    Certificate,
    CertificateVote,
    check_certificate,
    check_certificates,
)
from neonet.proto.bank.validator import MemoryVoteStore, Validator, Vote, VoteBatch
from neonet.proto.bank.votes import QuorumCheck
from tests.proto.bank.world import World, identity


def _direct_votes(world: World, block: bytes, indexes: Sequence[int]) -> list[CertificateVote]:
    votes: list[CertificateVote] = []
    for i in indexes:
        answer = world.validators[i].handle_sign_request(block)
        assert isinstance(answer, Vote)
        votes.append((answer.validator, answer.signature))
    return votes


@pytest.mark.parametrize("junk_index", [4, 5, 99])
def test_a_vote_outside_the_committee_makes_the_certificate_invalid(junk_index: int) -> None:
    world = World()  # 4 validators, quorum 3
    alice = world.funded("alice", 50)
    block = alice.transfer(world.mint_account, 10)
    votes = _direct_votes(world, block, [0, 1, 2])
    assert check_certificate(Certificate(block, tuple(votes)), world.committee)
    padded = Certificate(block, (*votes, (junk_index, bytes(64))))
    assert check_certificate(padded, world.committee) is False
    # Also when the junk vote comes with a batch path, and next to valid certificates.
    batched = Certificate(block, (*votes, (junk_index, bytes(64), 1, bytes(32))))
    good = Certificate(block, tuple(votes))
    assert check_certificates([good, batched, good], world.committee) == [True, False, True]


def test_a_certificate_below_quorum_costs_no_hashing_or_signature_work() -> None:
    world = World()
    alice = world.funded("alice", 50)
    block = alice.transfer(world.mint_account, 10)
    votes = _direct_votes(world, block, [0, 1, 2])
    calls: list[int] = []

    def counting_roots(
        committee_id: bytes, body: bytes, paths: Sequence[tuple[int, bytes]]
    ) -> tuple[bytes, list[bytes]]:
        calls.append(len(paths))
        return backend.ACTIVE.vote_roots(committee_id, body, paths)

    implementation = dataclasses.replace(backend.ACTIVE, vote_roots=counting_roots)
    short = Certificate(block, tuple(votes[:2]))
    check = QuorumCheck([short], world.committee, implementation)
    assert calls == [] and check.pending == []
    assert check.finish([]) == [False]
    full = QuorumCheck([Certificate(block, tuple(votes))], world.committee, implementation)
    assert calls == [3] and len(full.pending) == 3
    assert full.finish(backend.ACTIVE.verify_signatures(full.pending)) == [True]


def test_a_signed_batch_takes_no_vote_and_records_nothing() -> None:
    world = World()
    alice = world.funded("alice", 50)
    store = MemoryVoteStore()
    validator = Validator(
        world.committee, 0, identity("w-validator-0").sign, world.mint_account, store
    )
    for wallet in (world.mint, alice):
        for certificate in wallet.history:
            validator.handle_certificate(certificate)
    batch = VoteBatch()
    assert validator.sign_batch(batch) is None  # signed (empty): it takes no more votes
    block = alice.transfer(world.mint_account, 10)
    before = dict(store.votes)
    with pytest.raises(ValueError, match="signed already"):
        validator.handle_sign_request(block, batch=batch)
    assert store.votes == before  # no vote recorded that no signature will cover
    assert batch.leaves == []


def test_decoded_block_is_set_by_the_decoder_only() -> None:
    world = World()
    alice = world.funded("alice", 50)
    other = alice.history[0]
    votes = tuple(_direct_votes(world, alice.transfer(world.mint_account, 10), [0, 1, 2]))
    block = alice.pending
    assert block is not None
    with pytest.raises(TypeError):
        Certificate(block, votes, other.decoded())  # type: ignore[call-arg]
    built = Certificate(block, votes)
    assert built.decoded_block is None and built.decoded() == decode_block(block)
    decoded = Certificate.decode(built.encode())
    assert decoded.decoded_block == decode_block(block)


def test_a_caller_decoded_block_is_never_cached() -> None:
    world = World()
    alice = world.funded("alice", 50)
    validator = world.validators[0]
    block = alice.transfer(world.mint_account, 10)
    answer = validator.handle_sign_request(block, decoded=decode_block(block))
    assert isinstance(answer, Vote)
    assert block not in validator.recent_blocks  # the caller's decoding is not trusted
    second = world.validators[1]
    assert isinstance(second.handle_sign_request(block), Vote)
    assert second.recent_blocks[block] == decode_block(block)  # its own decoding is


def test_to_value_hands_out_no_shared_list() -> None:
    world = World()
    alice = world.funded("alice", 50)
    certificate = alice.recent[-1]
    value = certificate.to_value()
    encoded = certificate.encode()
    value.append("junk")
    votes = value[1]
    assert isinstance(votes, list)
    votes.clear()
    assert certificate.to_value() == [certificate.block, certificate.votes_value()]
    assert certificate.encode() == encoded


def test_a_block_the_engine_decoded_is_cached_until_its_certificate() -> None:
    world = World()
    alice = world.funded("alice", 50)
    validator = world.validators[0]
    block = alice.transfer(world.mint_account, 10)
    decoded = validator.decode(block)  # as the service does for a SIGN_BATCH
    assert validator.recent_blocks[block] is decoded == decode_block(block)
    assert validator.decode(block) is decoded  # not parsed twice
    assert isinstance(validator.handle_sign_request(block, decoded=decoded), Vote)
    certificate = world.certify(block, [1, 2, 3])  # validator 0 is not asked again
    assert certificate is not None
    parsed = Certificate.from_value(certificate.to_value(), validator.recent_blocks)
    assert parsed.decoded_block is decoded  # the certificate's block was not parsed again
    validator.handle_certificate(parsed)
    assert block not in validator.recent_blocks  # taken with its certificate
    with pytest.raises(DecodeError):
        validator.decode(b"not a block")
