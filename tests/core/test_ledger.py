"""Ledger blocks on both backends: encoding, hashing, and every chain check with its reason."""

from __future__ import annotations

import pytest

from neonet.core import backend as backend_module
from neonet.core import cbor
from neonet.core.backend import Implementation
from neonet.core.errors import DecodeError
from neonet.core.ledger import (
    MAX_BLOCKS,
    Block,
    BlockKind,
    ChainFailure,
    ChainHead,
    ChainVerdict,
    RejectReason,
    decode_block,
    encode_block,
    sign_and_encode,
    sign_block,
)
from tests.core.ledger_chains import Account, signing_key

OPEN_BODY = bytes.fromhex(
    "890158200001020304050607"
    "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f00"
    "5820" + "00" * 32 + "0000005820000102030405060708090a0b0c0d0e0f10111213141516"
    "1718191a1b1c1d1e1f40"
)
OPEN_HASH = bytes.fromhex("acff8d35b95ab3430e458a22ce71921dc6196579e4f0541e065836658a4d61c2")


def test_block_body_encoding_and_hash(backend: Implementation) -> None:
    block = Block(
        account=bytes(range(32)),
        sequence=0,
        previous=bytes(32),
        kind=BlockKind.OPEN,
        amount=0,
        balance=0,
        key=bytes(range(32)),
    )
    assert block.encode_body() == OPEN_BODY
    assert backend.hash_block_body(OPEN_BODY) == OPEN_HASH
    assert block.hash() == OPEN_HASH
    # Domain separation: not the plain BLAKE3 hash, and any other body hashes differently.
    import blake3

    assert blake3.blake3(OPEN_BODY).digest() != OPEN_HASH
    assert backend.hash_block_body(OPEN_BODY + b"\x00") != OPEN_HASH
    assert backend.hash_block_body(b"") == bytes.fromhex(
        blake3.blake3(b"", derive_key_context="NeoNet 2026 bank block v1").hexdigest()
    )


def test_encode_decode_round_trip() -> None:
    alice = Account(1)
    alice.block(BlockKind.OPEN)
    encoded = alice.block(BlockKind.RECEIVE, 25, payload=b"from bob")
    block = decode_block(encoded)
    assert (block.sequence, block.kind, block.amount, block.balance) == (1, 3, 25, 25)
    assert block.payload == b"from bob"
    assert encode_block(block) == encoded
    assert cbor.decode(encoded) == [
        [1, alice.account, 1, block.previous, 3, 25, 25, alice.key, b"from bob"],
        block.signature,
    ]


def test_sign_and_encode_is_encode_block_of_sign_block() -> None:
    key = signing_key(7)
    public = key.verify_key.encode()
    block = Block(public, 3, bytes(range(32)), BlockKind.TRANSFER, 5, 9, public, b"pay")
    signed = sign_and_encode(block, lambda message: key.sign(message).signature)
    assert signed == encode_block(sign_block(block, lambda m: key.sign(m).signature))
    assert decode_block(signed).hash() == block.hash()
    with pytest.raises(ValueError, match="signature must be 64 bytes"):
        sign_and_encode(block, lambda message: b"short")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "a signed block must be the array [body, signature]"),
        ([[1] * 9, b"", b""], "a signed block must be the array [body, signature]"),
        ([b"", bytes(64)], "a signed block must be the array [body, signature]"),
        ([[1], bytes(64)], "a block body must be an array of 9 fields"),
        ([[2, *[0] * 8], bytes(64)], "block version must be 1"),
        ([[True, *[0] * 8], bytes(64)], "block version must be 1"),
        ([[1, bytes(31), *[0] * 7], bytes(64)], "account must be 32 bytes"),
        ([[1, bytes(32), -1, *[0] * 6], bytes(64)], "sequence must be an unsigned integer"),
        ([[1, bytes(32), 0, bytes(33), *[0] * 5], bytes(64)], "previous must be 32 bytes"),
        (
            [[1, bytes(32), 0, bytes(32), None, 0, 0, 0, 0], bytes(64)],
            "kind must be an unsigned integer",
        ),
        (
            [[1, bytes(32), 0, bytes(32), 0, "1", 0, 0, 0], bytes(64)],
            "amount must be an unsigned integer",
        ),
        (
            [[1, bytes(32), 0, bytes(32), 0, 0, [], 0, 0], bytes(64)],
            "balance must be an unsigned integer",
        ),
        ([[1, bytes(32), 0, bytes(32), 0, 0, 0, b"", 0], bytes(64)], "key must be 32 bytes"),
        (
            [[1, bytes(32), 0, bytes(32), 0, 0, 0, bytes(32), "x"], bytes(64)],
            "payload must be bytes",
        ),
        (
            [[1, bytes(32), 0, bytes(32), 0, 0, 0, bytes(32), bytes(1025)], bytes(64)],
            "payload exceeds 1024 bytes",
        ),
        (
            [[1, bytes(32), 0, bytes(32), 0, 0, 0, bytes(32), b""], bytes(63)],
            "signature must be 64 bytes",
        ),
    ],
)
def test_malformed_blocks(backend: Implementation, value: object, message: str) -> None:
    encoded = cbor.encode(value)
    with pytest.raises(DecodeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode_block(encoded)
    verdict = backend.verify_chain([encoded], mint_account=None)
    assert verdict == ChainVerdict(0, None, ChainFailure(0, RejectReason.MALFORMED, message))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x82",
        bytes.fromhex("a0"),
        # A well-formed block with its sequence as a bignum tag: not canonical.
        bytes.fromhex("8289015820") + bytes(32) + bytes.fromhex("c2410000"),
    ],
)
def test_undecodable_blocks(backend: Implementation, data: bytes) -> None:
    verdict = backend.verify_chain([data], mint_account=None)
    assert verdict.failure == ChainFailure(0, RejectReason.DECODE, "block is not canonical CBOR")
    with pytest.raises(DecodeError):
        decode_block(data)


def test_oversized_block(backend: Implementation) -> None:
    verdict = backend.verify_chain([bytes(2049)], mint_account=None)
    assert verdict.failure == ChainFailure(
        0, RejectReason.DECODE, "block of 2049 bytes exceeds 2048 bytes"
    )


def test_non_canonical_encoding_of_a_valid_block(backend: Implementation) -> None:
    alice = Account(2)
    encoded = alice.block(BlockKind.OPEN)
    assert backend.verify_chain([encoded], mint_account=None).ok
    # The same block with the array head of the body in a two-byte form.
    stretched = b"\x82\x98\x09" + encoded[2:]
    verdict = backend.verify_chain([stretched], mint_account=None)
    assert verdict.failure is not None and verdict.failure.reason == RejectReason.DECODE


def _full_chain() -> tuple[Account, Account]:
    mint = Account(10)
    mint.block(BlockKind.OPEN)
    mint.block(BlockKind.ISSUE, 1_000_000)
    mint.block(BlockKind.TRANSFER, 250)
    alice = Account(11)
    alice.block(BlockKind.OPEN, payload=b"hello")
    alice.block(BlockKind.RECEIVE, 250, payload=b"from the mint")
    alice.block(BlockKind.OPEN_PURSE, 100)
    alice.block(BlockKind.REDEEM, 40)
    alice.rotate(12)
    alice.block(BlockKind.TRANSFER, 190)
    return mint, alice


def test_valid_chains(backend: Implementation) -> None:
    mint, alice = _full_chain()
    verdict = backend.verify_chain(mint.blocks, mint_account=mint.account)
    assert verdict == ChainVerdict(3, mint.head, None)
    assert verdict.ok
    verdict = backend.verify_chain(alice.blocks, mint_account=mint.account)
    assert verdict == ChainVerdict(6, alice.head, None)
    assert verdict.head is not None
    assert verdict.head.balance == 0
    assert verdict.head.key == bytes(signing_key(12).verify_key)
    assert verdict.head.key != alice.account


def test_continuing_from_a_head(backend: Implementation) -> None:
    _, alice = _full_chain()
    first = backend.verify_chain(alice.blocks[:3], mint_account=None)
    assert first.ok and first.head is not None
    rest = backend.verify_chain(alice.blocks[3:], mint_account=None, start=first.head)
    assert rest == ChainVerdict(3, alice.head, None)
    # Nothing to add: the start is the head.
    assert backend.verify_chain([], mint_account=None, start=first.head) == ChainVerdict(
        0, first.head, None
    )
    assert backend.verify_chain([], mint_account=None) == ChainVerdict(0, None, None)
    # The opening block cannot follow a head.
    refused = backend.verify_chain(alice.blocks[:1], mint_account=None, start=first.head)
    assert refused.head == first.head
    assert refused.failure == ChainFailure(0, RejectReason.SEQUENCE, "sequence 0, expected 3")


def test_a_head_at_the_last_sequence_number(backend: Implementation) -> None:
    alice = Account(5)
    alice.block(BlockKind.OPEN)
    assert alice.head is not None
    last = ChainHead(alice.account, 2**64 - 1, alice.head.hash, 0, alice.key)
    block = alice.block(BlockKind.RECEIVE, 1, sequence=2**64 - 1, advance=False)
    verdict = backend.verify_chain([block], mint_account=None, start=last)
    assert verdict == ChainVerdict(
        0, last, ChainFailure(0, RejectReason.SEQUENCE, f"sequence {2**64 - 1}, expected {2**64}")
    )


def _refusal(
    backend: Implementation, blocks: list[bytes], mint: bytes | None = None
) -> tuple[int, RejectReason, str]:
    verdict = backend.verify_chain(blocks, mint_account=mint)
    assert verdict.failure is not None
    assert verdict.valid_count == verdict.failure.index
    return verdict.failure.index, verdict.failure.reason, verdict.failure.message


def test_opening_rules(backend: Implementation) -> None:
    alice = Account(20)
    assert _refusal(backend, [alice.block(BlockKind.RECEIVE, 5, advance=False)]) == (
        0,
        RejectReason.KIND,
        "sequence 0 must be an OPEN block",
    )
    assert _refusal(backend, [alice.block(BlockKind.OPEN, sequence=1, advance=False)]) == (
        0,
        RejectReason.SEQUENCE,
        "sequence 1, expected 0",
    )
    assert _refusal(backend, [alice.block(BlockKind.OPEN, previous=b"\x01" * 32, advance=False)])[
        1
    ] == (RejectReason.PREVIOUS)
    assert _refusal(backend, [alice.block(BlockKind.OPEN, 5, advance=False)]) == (
        0,
        RejectReason.BALANCE,
        "OPEN must have amount 0",
    )
    assert _refusal(backend, [alice.block(BlockKind.OPEN, balance=7, advance=False)]) == (
        0,
        RejectReason.BALANCE,
        "balance 7, expected 0",
    )
    bob = Account(21)
    # Signed by the right signer but naming another key: the opening key is the account.
    assert _refusal(backend, [alice.block(BlockKind.OPEN, key=bob.key, advance=False)]) == (
        0,
        RejectReason.KEY,
        "key is not the account's current key",
    )
    # Signed by someone else entirely.
    assert _refusal(backend, [alice.block(BlockKind.OPEN, signer=bob.signer, advance=False)]) == (
        0,
        RejectReason.SIGNATURE,
        "signature does not verify under the block's key",
    )


def test_chain_rules(backend: Implementation) -> None:
    alice = Account(30)
    alice.block(BlockKind.OPEN)
    alice.block(BlockKind.RECEIVE, 100)
    good = list(alice.blocks)
    other = Account(31)
    cases = [
        (
            alice.block(BlockKind.RECEIVE, 1, account=other.account, advance=False),
            RejectReason.ACCOUNT,
            "account does not match the chain's account",
        ),
        (
            alice.block(BlockKind.RECEIVE, 1, sequence=5, advance=False),
            RejectReason.SEQUENCE,
            "sequence 5, expected 2",
        ),
        (
            alice.block(BlockKind.RECEIVE, 1, previous=bytes(32), advance=False),
            RejectReason.PREVIOUS,
            "previous does not match the preceding block's hash",
        ),
        (alice.block(9, 0, advance=False), RejectReason.KIND, "unknown block kind 9"),
        (
            alice.block(2**64 - 1, 0, advance=False),
            RejectReason.KIND,
            f"unknown block kind {2**64 - 1}",
        ),
        (
            alice.block(BlockKind.OPEN, advance=False),
            RejectReason.KIND,
            "OPEN is only allowed at sequence 0",
        ),
        (
            alice.block(BlockKind.ISSUE, 5, advance=False),
            RejectReason.KIND,
            "ISSUE is only allowed on the mint account",
        ),
        (
            alice.block(BlockKind.TRANSFER, 101, balance=0, advance=False),
            RejectReason.BALANCE,
            "insufficient balance: 100 - 101 is negative",
        ),
        (
            alice.block(BlockKind.RECEIVE, 2**64 - 100, balance=0, advance=False),
            RejectReason.BALANCE,
            f"balance overflow: 100 + {2**64 - 100} exceeds 2^64-1",
        ),
        (
            alice.block(BlockKind.RECEIVE, 5, balance=104, advance=False),
            RejectReason.BALANCE,
            "balance 104, expected 105",
        ),
        (
            alice.block(BlockKind.ROTATE_KEY, 1, payload=other.key, advance=False),
            RejectReason.BALANCE,
            "ROTATE_KEY must have amount 0",
        ),
        (
            alice.block(BlockKind.ROTATE_KEY, payload=other.key[:31], advance=False),
            RejectReason.KEY,
            "ROTATE_KEY payload must be the new 32-byte key",
        ),
        (
            alice.block(BlockKind.RECEIVE, 1, signer=other.signer, advance=False),
            RejectReason.SIGNATURE,
            "signature does not verify under the block's key",
        ),
    ]
    for block, reason, message in cases:
        verdict = backend.verify_chain([*good, block, good[0]], mint_account=None)
        assert verdict == ChainVerdict(2, alice.head, ChainFailure(2, reason, message)), message


def test_issue_on_the_mint_account(backend: Implementation) -> None:
    mint = Account(40)
    mint.block(BlockKind.OPEN)
    mint.block(BlockKind.ISSUE, 2**64 - 1)
    assert backend.verify_chain(mint.blocks, mint_account=mint.account).ok
    assert _refusal(backend, mint.blocks, mint=Account(41).account)[1] == RejectReason.KIND
    overflow = mint.block(BlockKind.ISSUE, 1, balance=0, advance=False)
    assert _refusal(backend, [*mint.blocks, overflow], mint=mint.account) == (
        2,
        RejectReason.BALANCE,
        f"balance overflow: {2**64 - 1} + 1 exceeds 2^64-1",
    )


def test_rotation_hands_over_the_key(backend: Implementation) -> None:
    alice = Account(50)
    alice.block(BlockKind.OPEN)
    old_signer = alice.signer
    alice.rotate(51)
    signed_by_old = alice.block(
        BlockKind.RECEIVE, 1, key=alice.account, signer=old_signer, advance=False
    )
    assert _refusal(backend, [*alice.blocks, signed_by_old]) == (
        2,
        RejectReason.KEY,
        "key is not the account's current key",
    )
    alice.block(BlockKind.RECEIVE, 1)
    assert backend.verify_chain(alice.blocks, mint_account=None).ok


def test_a_bad_signature_before_a_structural_fault(backend: Implementation) -> None:
    alice = Account(60)
    for _ in range(300):  # more than one native signature chunk
        alice.block(BlockKind.RECEIVE if alice.head else BlockKind.OPEN, 1 if alice.head else 0)
    blocks = list(alice.blocks)
    blocks[280] = blocks[280][:-1] + bytes([blocks[280][-1] ^ 1])
    blocks.append(b"junk")
    assert _refusal(backend, blocks) == (
        280,
        RejectReason.SIGNATURE,
        "signature does not verify under the block's key",
    )
    blocks[280] = alice.blocks[280]
    verdict = backend.verify_chain(blocks, mint_account=None)
    assert verdict == ChainVerdict(
        300, alice.head, ChainFailure(300, RejectReason.DECODE, "block is not canonical CBOR")
    )


def test_chain_check_without_signatures(backend: Implementation) -> None:
    alice = Account(61)
    for _ in range(5):
        alice.block(BlockKind.RECEIVE if alice.head else BlockKind.OPEN, 1 if alice.head else 0)
    blocks = list(alice.blocks)
    blocks[3] = blocks[3][:-1] + bytes([blocks[3][-1] ^ 1])  # a bad signature only
    assert _refusal(backend, blocks)[:2] == (3, RejectReason.SIGNATURE)
    unsigned = backend.verify_chain(blocks, mint_account=None, signatures=False)
    assert unsigned.ok and unsigned.head == alice.head
    # Every other rule still holds without the signature pass.
    skipped = [blocks[0], blocks[2]]
    verdict = backend.verify_chain(skipped, mint_account=None, signatures=False)
    assert verdict.failure is not None and verdict.failure.reason == RejectReason.SEQUENCE


def test_argument_errors(backend: Implementation) -> None:
    with pytest.raises(ValueError, match="at most 100000 blocks"):
        backend.verify_chain([b""] * (MAX_BLOCKS + 1), mint_account=None)
    with pytest.raises(ValueError, match="mint_account must be 32 bytes"):
        backend.verify_chain([], mint_account=b"short")
    with pytest.raises(TypeError):
        backend.verify_chain(["text"], mint_account=None)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        backend.hash_block_body("text")  # type: ignore[arg-type]


def test_heads_and_blocks_check_their_fields() -> None:
    with pytest.raises(ValueError, match="hash must be 32 bytes"):
        ChainHead(bytes(32), 0, b"", 0, bytes(32))
    with pytest.raises(ValueError, match="sequence must be an integer"):
        ChainHead(bytes(32), -1, bytes(32), 0, bytes(32))
    with pytest.raises(ValueError, match="balance must be an integer"):
        ChainHead(bytes(32), 0, bytes(32), 2**64, bytes(32))
    with pytest.raises(ValueError, match="payload"):
        Block(bytes(32), 0, bytes(32), 0, 0, 0, bytes(32), bytes(1025))
    with pytest.raises(ValueError, match="kind"):
        Block(bytes(32), 0, bytes(32), True, 0, 0, bytes(32))


def test_backend_switch_exposes_the_ledger() -> None:
    active = backend_module.ACTIVE
    assert backend_module.verify_chain is active.verify_chain
    assert backend_module.hash_block_body(OPEN_BODY) == OPEN_HASH
