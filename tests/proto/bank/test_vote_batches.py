"""Batch votes (docs/bank.md, "Batch votes"): one signature per SIGN_BATCH over the root of
a BLAKE3 Merkle tree of the vote messages; a certificate vote carries its leaf's path."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core import backend
from neonet.core.errors import DecodeError
from neonet.core.ledger import vote_tree_node
from neonet.proto.bank import wire
from neonet.proto.bank.messages import (
    Certificate,
    block_hash,
    check_certificate,
    check_certificates,
    vote_message,
)
from neonet.proto.bank.validator import MemoryVoteStore, Refusal, Validator, Vote, VoteBatch
from neonet.proto.bank.votes import vote_tree
from tests.proto.bank.world import World, batch_vote, identity

COMMITTEE = bytes(range(32))
BODIES = st.lists(st.binary(max_size=40), min_size=1, max_size=70, unique=True)


def _leaf(body: bytes) -> bytes:
    """A block body's vote message: the leaf of its batch vote tree (core ``vote_roots``)."""
    return backend.ACTIVE.vote_roots(COMMITTEE, body, [])[0]


def _root(body: bytes, sides: int, path: bytes) -> bytes:
    """The root ``body``'s leaf and ``(sides, path)`` lead to (core ``vote_roots``)."""
    return backend.ACTIVE.vote_roots(COMMITTEE, body, [(sides, path)])[1][0]


def _bodies(count: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(count)]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 33, 256])
def test_every_leaf_leads_to_the_root(count: int) -> None:
    bodies = _bodies(count)
    leaves = [_leaf(body) for body in bodies]
    root, paths = vote_tree(leaves)
    assert len(paths) == count
    for body, (sides, path) in zip(bodies, paths, strict=True):
        assert _root(body, sides, path) == root
        assert len(path) % 32 == 0 and sides < 1 << (len(path) // 32)
        assert len(path) // 32 <= (count - 1).bit_length()
    if count == 1:
        assert root == leaves[0] and paths == [(0, b"")]  # a direct vote
    if count == 2:
        assert root == vote_tree_node(leaves[0], leaves[1])


@settings(max_examples=200, deadline=None)
@given(bodies=BODIES, data=st.data())
def test_a_path_proves_its_own_leaf_only(bodies: list[bytes], data: st.DataObject) -> None:
    root, paths = vote_tree([_leaf(body) for body in bodies])
    index = data.draw(st.integers(0, len(bodies) - 1))
    body = bodies[index]
    sides, path = paths[index]
    assert _root(body, sides, path) == root
    other = data.draw(st.binary(max_size=40))
    if other != body:
        assert _root(other, sides, path) != root
    if len(bodies) > 1:  # another leaf of the same tree with this leaf's path
        swapped = data.draw(st.integers(0, len(bodies) - 2))
        swapped += swapped >= index
        assert _root(bodies[swapped], sides, path) != root
    depth = len(path) // 32
    if depth:
        k = data.draw(st.integers(0, depth - 1))
        assert _root(body, sides ^ (1 << k), path) != root
        tampered = bytearray(path)
        tampered[32 * k + data.draw(st.integers(0, 31))] ^= 1 << data.draw(st.integers(0, 7))
        assert _root(body, sides, bytes(tampered)) != root
        shorter = sides & ((1 << (depth - 1)) - 1)
        assert _root(body, shorter, path[:-32]) != root


def test_a_validator_signs_a_batch_once_after_recording_every_vote() -> None:
    world = World()
    alice = world.funded("alice", 500)
    store = MemoryVoteStore()
    signed: list[bytes] = []
    key = identity("w-validator-0")

    def sign(message: bytes) -> bytes:
        # Every vote of the batch is durable before the one signature exists.
        assert len(store.votes) == recorded_before + 3
        signed.append(message)
        return key.sign(message)

    validator = Validator(world.committee, 0, sign, world.mint_account, store)
    wallets = [alice, world.funded("bob", 100), world.funded("carol", 100)]
    for wallet in [world.mint, *wallets]:
        for certificate in wallet.history:
            validator.handle_certificate(certificate)
    recorded_before = len(store.votes)
    blocks = [wallet.transfer(world.mint_account, 10) for wallet in wallets]
    batch = VoteBatch()
    answers = [validator.handle_sign_request(block, batch=batch) for block in blocks]
    assert all(isinstance(a, Vote) and a.signature == b"" for a in answers)
    assert signed == []
    signature = validator.sign_batch(batch)
    assert signature is not None and len(signed) == 1
    root, paths = vote_tree([vote_message(world.committee.id(), block_hash(b)) for b in blocks])
    assert signed == [root]
    with pytest.raises(ValueError, match="signed already"):
        validator.handle_sign_request(alice.pending or blocks[0], batch=batch)
    # Each block's certificate holds this batch vote and two direct votes.
    for block, (sides, path) in zip(blocks, paths, strict=True):
        others = [world.validators[i].handle_sign_request(block) for i in (1, 2)]
        votes = [(0, signature, sides, path)] + [
            (v.validator, v.signature) for v in others if isinstance(v, Vote)
        ]
        certificate = Certificate(block, tuple(votes))  # type: ignore[arg-type]
        assert check_certificate(certificate, world.committee)
        assert Certificate.decode(certificate.encode()) == certificate
    # A batch vote moved to another block of the batch does not count: next to two valid
    # direct votes, it alone decides the quorum (the control, with its own path, holds).
    direct = [world.validators[i].handle_sign_request(blocks[1]) for i in (1, 2)]
    others = tuple((v.validator, v.signature) for v in direct if isinstance(v, Vote))
    assert len(others) == 2
    moved = Certificate(blocks[1], ((0, signature, *paths[0]), *others))
    control = Certificate(blocks[1], ((0, signature, *paths[1]), *others))
    assert check_certificates([moved, control], world.committee) == [False, True]
    assert validator.sign_batch(VoteBatch()) is None  # nothing voted: nothing signed


def test_refusals_take_no_leaf() -> None:
    world = World()
    alice = world.funded("alice", 50)
    validator = world.validators[0]
    batch = VoteBatch()
    block = alice.transfer(world.mint_account, 10)
    too_much = world.wallet("nobody").open()[:-3] + b"bad"
    assert isinstance(validator.handle_sign_request(too_much, batch=batch), Refusal)
    assert isinstance(validator.handle_sign_request(block, batch=batch), Vote)
    assert len(batch.leaves) == 1
    signature = validator.sign_batch(batch)
    # One leaf: its root is the vote message, so the batch vote is a direct vote.
    message = vote_message(world.committee.id(), block_hash(block))
    assert signature is not None
    assert backend.verify_signature(world.committee.validators[0], message, signature)


def _pending_transfer(
    name: str,
) -> tuple[backend.Implementation, World, bytes, list[bytes]]:
    """Backend ``name``, a world, alice's signed transfer waiting for votes, and the
    blocks of her last three certificates (the earlier leaves of batches)."""
    if name == "native" and not backend.NATIVE_AVAILABLE:
        pytest.skip("the native module is not built")
    implementation = backend.implementation(name)
    world = World()
    alice = world.funded("alice", 500)
    alice.transfer(world.mint_account, 1)
    assert alice.pending is not None
    return implementation, world, alice.pending, [c.block for c in alice.recent[-3:]]


@pytest.mark.parametrize("name", ["pure", "native"])
def test_both_backends_agree_on_batch_certificates(name: str) -> None:
    implementation, world, block, earlier = _pending_transfer(name)
    votes = [batch_vote(world.validators[i], block, earlier[: i + 1]) for i in range(3)]
    assert all(isinstance(v, Vote) and v.path for v in votes)
    good = Certificate(
        block,
        tuple((v.validator, v.signature, v.sides, v.path) for v in votes),  # type: ignore[union-attr]
    )
    first = good.votes[0]
    assert len(first) == 4
    bad_path = Certificate(block, ((0, first[1], first[2], bytes(len(first[3]))), *good.votes[1:]))
    bad_sides = Certificate(block, ((0, first[1], first[2] ^ 1, first[3]), *good.votes[1:]))
    certificates = [good, bad_path, bad_sides, world.mint.recent[-1]]
    expected = [True, False, False, True]
    assert check_certificates(certificates, world.committee, implementation) == expected


def test_batch_vote_decoding_is_strict() -> None:
    world = World()
    alice = world.funded("alice", 50)
    certificate = alice.recent[-1]
    block = certificate.block
    signature = bytes(64)
    node = bytes(32)
    good = Certificate(
        block, ((0, signature, 1, node), (1, signature), (2, signature, 0, node + node))
    )
    assert Certificate.decode(good.encode()) == good
    for votes in (
        [[0, signature, 2, node]],  # a side bit beyond the path
        [[0, signature, 0, b""]],  # an empty path must be a direct vote
        [[0, signature, 0, node[:31]]],
        [[0, signature, 0, node + node[:31]]],
        [[0, signature, 0, node * 17]],  # deeper than 2**16 leaves
        [[0, signature, True, node]],
        [[0, signature, 0]],
        [[0, signature, 0, [node]]],  # the path is one byte string
    ):
        with pytest.raises(DecodeError):
            Certificate.from_value([block, votes])


def test_batch_answers_are_parsed_strictly() -> None:
    sig = bytes(64)
    refused = [wire.REFUSED, "no", None, None]
    answers, signature = wire.parse_batch_answer(
        [wire.SIGN_BATCH, [[0, 1, 0], refused, [0, 1, 1]], sig], 3
    )
    assert signature == sig and answers[2] == [0, 1, 1]
    assert wire.parse_batch_answer([wire.SIGN_BATCH, [refused], None], 1) == ([refused], None)
    for bad in (
        [wire.SIGN_BATCH, [[0, 1, 1]], sig],  # positions start at 0
        [wire.SIGN_BATCH, [[0, 1, 0], [0, 1, 0]], sig],  # and increase by one
        [wire.SIGN_BATCH, [[0, 1, True]], sig],
        [wire.SIGN_BATCH, [[0, 1, 0]], None],  # votes need the signature
        [wire.SIGN_BATCH, [refused], sig],  # no votes: no signature
        [wire.SIGN_BATCH, [[0, 1, 0]], bytes(63)],
        [wire.SIGN_BATCH, [[0, 1, 0]]],  # the version 1 answer
    ):
        with pytest.raises(DecodeError):
            wire.parse_batch_answer(bad, len(bad[1]))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["pure", "native"])
def test_a_batch_signature_counts_only_for_its_signer_and_its_own_paths(name: str) -> None:
    implementation, world, block, earlier = _pending_transfer(name)
    # Validator 0 signs two batches holding the block: A (2 leaves) and B (3 leaves).
    in_a = batch_vote(world.validators[0], block, earlier[:1])
    in_b = batch_vote(world.validators[0], block, earlier[:2])
    assert isinstance(in_a, Vote) and isinstance(in_b, Vote)
    assert in_a.signature != in_b.signature and in_a.path != in_b.path
    others = []
    for i in (1, 2):
        vote = world.validators[i].handle_sign_request(block)
        assert isinstance(vote, Vote)
        others.append((vote.validator, vote.signature))
    own_a = Certificate(block, ((0, in_a.signature, in_a.sides, in_a.path), *others))
    own_b = Certificate(block, ((0, in_b.signature, in_b.sides, in_b.path), *others))
    # Batch A's path with batch B's signature, and the other way round.
    mixed_ab = Certificate(block, ((0, in_b.signature, in_a.sides, in_a.path), *others))
    mixed_ba = Certificate(block, ((0, in_a.signature, in_b.sides, in_b.path), *others))
    # Validator 0's batch vote under validator 3's index (votes 1, 2, 3).
    stolen = Certificate(block, (*others, (3, in_a.signature, in_a.sides, in_a.path)))
    certificates = [own_a, own_b, mixed_ab, mixed_ba, stolen]
    verdicts = check_certificates(certificates, world.committee, implementation)
    assert verdicts == [True, True, False, False, False]
