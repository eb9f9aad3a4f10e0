"""NeoBankof ledger blocks: format, hash, chain checks and Ed25519 (ZIP-215) verification.

The format is specified in ``docs/ledger.md`` (ARCHITECTURE.md, "NeoBankof"). A signed
block is the canonical CBOR array ``[body, signature]`` with ``body = [1, account,
sequence, previous, kind, amount, balance, key, payload]``. The block hash is BLAKE3 in
derive-key mode with the context ``BLOCK_HASH_CONTEXT`` over the canonical body, and the
signature is Ed25519 by ``key`` over that 32-byte hash, valid under the ZIP-215 rules.

This module is the pure-Python twin of ``neonet_core::ledger`` (Rust, reached through
``neonet.core.backend``): ``hash_block_body``, ``verify_signature``,
``verify_signatures`` and ``verify_chain`` give the same results, reason codes,
messages and exceptions on both backends. The data types (``Block``, ``ChainHead``,
``ChainVerdict``, ...) and ``encode_block``/``decode_block`` are shared by both.

Signatures and ZIP-215 here: libsodium (PyNaCl) verifies first. It is stricter than
ZIP-215 (it refuses small-order and non-canonical ``A`` and ``R`` and checks the
cofactorless equation), and everything it accepts ZIP-215 accepts too: we check ``S <
L`` ourselves first; libsodium hashes the bytes as given, decodes ``A`` only from its
canonical encoding (so to the same point ZIP-215 decodes), and accepts only when
``[S]B - [k]A`` encodes to exactly ``R_bytes``, so ``R_bytes`` is canonical and decodes
to that point, and ``[S]B = R + [k]A`` implies ``[8][S]B = [8]R + [8][k]A``.

When libsodium refuses, its verdict is final if both ``A`` and ``R`` pass libsodium's
``crypto_core_ed25519_is_valid_point`` (canonical, in the prime-order subgroup, not of
small order): then ``[S]B - [k]A - R`` lies in the prime-order subgroup, where ``[8]P =
0`` only for ``P = 0``, so both equations agree (about 0.25 ms). Otherwise we run the
exact check of ``neonet.core.zip215`` (plain integers, 2-3 ms). Honest signatures
never take either path; an attacker can make us take the slow one with crafted points,
which is why one call verifies at most ``MAX_SIGNATURES`` signatures (a chain stops at
its first bad signature, so ``verify_chain`` pays it at most once).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import blake3
import cbor2
from nacl.bindings import crypto_core_ed25519_is_valid_point as is_valid_point
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from neonet.core import cbor, zip215
from neonet.core.errors import DecodeError

BLOCK_HASH_CONTEXT = "NeoNet 2026 bank block v1"
BLOCK_VERSION = 1
MAX_PAYLOAD = 1024
MAX_BLOCK_SIZE = 2048
MAX_BLOCKS = 100_000
MAX_SIGNATURES = 4096
ZERO_HASH = bytes(32)
_U64_LIMIT = 1 << 64


class BlockKind(IntEnum):
    """The ``kind`` field; any other number makes the block invalid."""

    OPEN = 0
    ISSUE = 1  # credit; only on the mint account
    TRANSFER = 2  # debit
    RECEIVE = 3  # credit
    OPEN_PURSE = 4  # debit
    REDEEM = 5  # credit
    ROTATE_KEY = 6  # amount 0; payload is the new key
    CLAIM = 7  # credit: a payee's claim on a frozen account (bank rules check it)
    REFUND = 8  # credit: an expired purse's remainder back to its owner


CREDITS = frozenset(  # the kinds that add their amount to the balance
    (BlockKind.ISSUE, BlockKind.RECEIVE, BlockKind.REDEEM, BlockKind.CLAIM, BlockKind.REFUND)
)
_LAST_KIND = max(BlockKind)


class RejectReason(IntEnum):
    """Why ``verify_chain`` refused a block (the same codes as the Rust core)."""

    DECODE = 1  # oversized, or not canonical CBOR
    MALFORMED = 2  # canonical CBOR, but not a version-1 signed block
    ACCOUNT = 3  # not the chain's account
    SEQUENCE = 4  # not the next sequence number
    PREVIOUS = 5  # not linked to the preceding block's hash
    KIND = 6  # unknown kind, or not allowed here
    KEY = 7  # not the current key, or a bad key rotation
    BALANCE = 8  # wrong amount or balance, overflow, negative balance
    SIGNATURE = 9  # the signature does not verify under ZIP-215


def _check_bytes(value: object, length: int, name: str) -> None:
    if not isinstance(value, bytes) or len(value) != length:
        raise ValueError(f"{name} must be {length} bytes")


def _check_u64(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _U64_LIMIT:
        raise ValueError(f"{name} must be an integer in 0 .. 2**64-1")


@dataclass(frozen=True, slots=True)
class Block:
    """A signed block (well formed by construction; whether it is valid is ``verify_chain``'s)."""

    account: bytes
    sequence: int
    previous: bytes
    kind: int
    amount: int
    balance: int
    key: bytes
    payload: bytes = b""
    signature: bytes = bytes(64)

    def __post_init__(self) -> None:
        _check_bytes(self.account, 32, "account")
        _check_u64(self.sequence, "sequence")
        _check_bytes(self.previous, 32, "previous")
        _check_u64(self.kind, "kind")
        _check_u64(self.amount, "amount")
        _check_u64(self.balance, "balance")
        _check_bytes(self.key, 32, "key")
        if not isinstance(self.payload, bytes) or len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"payload must be bytes of at most {MAX_PAYLOAD}")
        _check_bytes(self.signature, 64, "signature")

    def encode_body(self) -> bytes:
        """The canonical CBOR encoding of the body: the bytes that are hashed."""
        # The fields passed ``__post_init__``: every one is in the canonical subset, so
        # cbor2 alone gives ``cbor.encode``'s bytes without its walk over the value.
        return cbor2.dumps(
            [
                BLOCK_VERSION,
                self.account,
                self.sequence,
                self.previous,
                int(self.kind),
                self.amount,
                self.balance,
                self.key,
                self.payload,
            ]
        )

    def hash(self) -> bytes:
        """The block hash (see ``hash_block_body``)."""
        return hash_block_body(self.encode_body())


def encode_block(block: Block) -> bytes:
    """The canonical CBOR encoding of the signed block ``[body, signature]``."""
    return b"\x82" + block.encode_body() + cbor.encode(block.signature)


def sign_block(block: Block, sign: Callable[[bytes], bytes]) -> Block:
    """``block`` with its signature: ``sign`` (e.g. ``Ed25519Identity.sign``) over its hash."""
    return Block(
        block.account,
        block.sequence,
        block.previous,
        block.kind,
        block.amount,
        block.balance,
        block.key,
        block.payload,
        sign(block.hash()),
    )


def sign_and_encode(block: Block, sign: Callable[[bytes], bytes]) -> bytes:
    """``encode_block(sign_block(block, sign))``, encoding the body once."""
    body = block.encode_body()
    signature = sign(hash_block_body(body))
    _check_bytes(signature, 64, "signature")
    return b"\x82" + body + cbor2.dumps(signature)


class _Refused(Exception):
    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# The decoded fields of a signed block, and the encoded body (what is hashed).
_Fields = tuple[bytes, int, bytes, int, int, int, bytes, bytes, bytes, bytes]

_NOT_CANONICAL = "block is not canonical CBOR"


def _shape(value: object) -> list[object] | str:
    """The body fields and signature of a decoded signed block, or what is wrong with it.

    Checks in the Rust order (``neonet_core::ledger::parse_block``), same messages. An
    integer of 2**64 or more (a bignum tag) fails here too, so that ``_parse``'s full
    check reports it as a decoding error, as Rust does.
    """
    if type(value) is not list or len(value) != 2 or type(value[0]) is not list:
        return "a signed block must be the array [body, signature]"
    body, signature = value
    if len(body) != 9:
        return "a block body must be an array of 9 fields"
    version, account, sequence, previous, kind, amount, balance, key, payload = body
    if type(version) is not int or version != BLOCK_VERSION:
        return "block version must be 1"
    if type(account) is not bytes or len(account) != 32:
        return "account must be 32 bytes"
    if type(sequence) is not int or not 0 <= sequence < _U64_LIMIT:
        return "sequence must be an unsigned integer"
    if type(previous) is not bytes or len(previous) != 32:
        return "previous must be 32 bytes"
    if type(kind) is not int or not 0 <= kind < _U64_LIMIT:
        return "kind must be an unsigned integer"
    if type(amount) is not int or not 0 <= amount < _U64_LIMIT:
        return "amount must be an unsigned integer"
    if type(balance) is not int or not 0 <= balance < _U64_LIMIT:
        return "balance must be an unsigned integer"
    if type(key) is not bytes or len(key) != 32:
        return "key must be 32 bytes"
    if type(payload) is not bytes:
        return "payload must be bytes"
    if len(payload) > MAX_PAYLOAD:
        return "payload exceeds 1024 bytes"
    if type(signature) is not bytes or len(signature) != 64:
        return "signature must be 64 bytes"
    return [*body[1:], signature]


def _parse(data: bytes) -> _Fields:
    """Decode a signed block for verification, or raise ``_Refused`` (DECODE/MALFORMED)."""
    if len(data) > MAX_BLOCK_SIZE:
        raise _Refused(
            RejectReason.DECODE, f"block of {len(data)} bytes exceeds {MAX_BLOCK_SIZE} bytes"
        )
    try:
        value = cbor.loads_or_raise(data)
    except DecodeError:
        raise _Refused(RejectReason.DECODE, _NOT_CANONICAL) from None
    shape = _shape(value)
    if isinstance(shape, str):
        # Decoding errors come before shape errors, as in Rust: check the value in full.
        try:
            cbor.decode(data)
        except DecodeError:
            raise _Refused(RejectReason.DECODE, _NOT_CANONICAL) from None
        raise _Refused(RejectReason.MALFORMED, shape)
    # The fields have the right types; one re-encoding shows the bytes are canonical.
    if cbor2.dumps(value) != data:
        raise _Refused(RejectReason.DECODE, _NOT_CANONICAL)
    # Canonical form: one byte of array head, the body, 0x58 0x40 and 64 signature bytes.
    return (*shape, data[1:-66])  # type: ignore[return-value]


def decode_block(data: bytes) -> Block:
    """Decode a signed block; ``DecodeError`` (with ``verify_chain``'s message) if it is not one.

    This checks the format only; ``verify_chain`` says whether the block is valid.
    """
    try:
        fields = _parse(data)
    except _Refused as refusal:
        raise DecodeError(refusal.message) from None
    return Block(*fields[:9])


def hash_block_body(body: bytes) -> bytes:
    """The block hash: BLAKE3 derive-key with ``BLOCK_HASH_CONTEXT`` over the encoded body."""
    if not isinstance(body, bytes):
        raise TypeError("body must be bytes")
    return blake3.blake3(body, derive_key_context=BLOCK_HASH_CONTEXT).digest()


VOTE_CONTEXT = "NeoNet 2026 bank vote v1"
VOTE_TREE_CONTEXT = "NeoNet 2026 bank vote tree v2"
MAX_VOTE_PATH = 16


def vote_tree_node(left: bytes, right: bytes) -> bytes:
    """An inner node of a batch vote tree (its own context: no leaf, which is a
    ``VOTE_CONTEXT`` hash, can pass for an inner node or the other way round)."""
    return blake3.blake3(left + right, derive_key_context=VOTE_TREE_CONTEXT).digest()


def vote_tree(leaves: Sequence[bytes], paths: bool = True) -> tuple[bytes, list[tuple[int, bytes]]]:
    """The root of the batch vote tree over ``leaves`` (32-byte vote messages, in batch
    order) and, with ``paths``, each leaf's ``(sides, path)`` for ``vote_roots`` (else
    an empty list; docs/bank.md, "Batch votes").

    Each level pairs nodes 0-1, 2-3, ...; a last node without a partner moves up
    unchanged. One leaf is its own root, with an empty path: a direct vote. Arguments
    are checked like the Rust twin's: ``leaves`` a sequence (not a string) of bytes or
    bytearray, else ``TypeError``; then a leaf not 32 bytes, or no leaves or more than
    65,536, ``ValueError``."""
    if isinstance(leaves, str) or not hasattr(leaves, "__len__"):
        raise TypeError("leaves must be a sequence of bytes")
    nodes = list(leaves)
    if not all(isinstance(node, bytes | bytearray) for node in nodes):
        raise TypeError("a vote tree leaf must be bytes")
    if any(len(node) != 32 for node in nodes):
        raise ValueError("a vote tree leaf is 32 bytes")
    if not 0 < len(nodes) <= 1 << MAX_VOTE_PATH:
        raise ValueError("a vote tree has 1..65536 leaves")
    level = [bytes(node) for node in nodes]
    levels = [level]
    while len(level) > 1:
        above = [vote_tree_node(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            above.append(level[-1])
        levels.append(above)
        level = above
    found: list[tuple[int, bytes]] = []
    if paths:
        below_root = levels[:-1]
        for leaf in range(len(nodes)):
            position, sides = leaf, 0
            path: list[bytes] = []
            for row in below_root:
                sibling = position ^ 1
                if sibling < len(row):
                    if position & 1:
                        sides |= 1 << len(path)
                    path.append(row[sibling])
                position >>= 1
            found.append((sides, b"".join(path)))
    return level[0], found


def vote_roots(
    committee_id: bytes, body: bytes, paths: Sequence[tuple[int, bytes]]
) -> tuple[bytes, list[bytes]]:
    """A block's vote message (from its encoded ``body``) and the root each ``(sides,
    path)`` leads to from it in a batch vote tree (docs/bank.md, "Batch votes"): ``path``
    is the siblings, 32 bytes each, bottom up; bit k of ``sides`` set means the k-th
    sibling is on the left. ``(0, b"")`` gives the message itself (a direct vote).

    Arguments are checked like the Rust twin's conversions, every item before any is
    folded: ``committee_id`` and ``body`` bytes, ``paths`` a sequence (not a string) of
    2-tuples of an integer and bytes or bytearray, else ``TypeError``; a tuple of another
    length ``ValueError``; sides outside 0..2**64 ``OverflowError``; then a path that is not
    whole nodes, or longer than 16, ``ValueError``."""
    checked = _vote_paths(paths)
    if not isinstance(committee_id, bytes):
        raise TypeError("committee_id must be bytes")
    leaf = blake3.blake3(
        committee_id + hash_block_body(body), derive_key_context=VOTE_CONTEXT
    ).digest()
    roots = []
    for sides, path in checked:
        if len(path) % 32 or len(path) > 32 * MAX_VOTE_PATH:
            raise ValueError("a vote path is at most 16 nodes of 32 bytes")
        node = leaf
        for k in range(0, len(path), 32):
            sibling = path[k : k + 32]
            left, right = (sibling, node) if sides >> (k // 32) & 1 else (node, sibling)
            node = vote_tree_node(left, right)
        roots.append(node)
    return leaf, roots


def _vote_paths(paths: object) -> list[tuple[int, bytes]]:
    """``paths`` converted as the Rust twin converts ``Vec<(u64, bytes)>``, all first."""
    if isinstance(paths, str) or not isinstance(paths, Sequence):
        raise TypeError("paths must be a sequence of (sides, path) tuples")
    checked = []
    for item in paths:
        if not isinstance(item, tuple):
            raise TypeError("each vote path must be a (sides, path) tuple")
        if len(item) != 2:
            raise ValueError("each vote path must be a tuple of length 2")
        sides = operator.index(item[0])  # TypeError for a float, as the twin
        if not 0 <= sides < _U64_LIMIT:
            raise OverflowError("vote sides must fit 64 bits")
        path = item[1]
        if not isinstance(path, bytes | bytearray):
            raise TypeError("a vote path must be bytes or bytearray")
        checked.append((sides, bytes(path)))
    return checked


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature under ZIP-215 (wrong lengths: False)."""
    if not (
        isinstance(public_key, bytes)
        and isinstance(message, bytes)
        and isinstance(signature, bytes)
    ):
        raise TypeError("public_key, message and signature must be bytes")
    return _verify(public_key, message, signature)


def _verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != 32 or len(signature) != 64:
        return False
    # S < L first: with it, libsodium's acceptance implies ZIP-215's (module docstring).
    if int.from_bytes(signature[32:], "little") >= zip215.L:
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except BadSignatureError:
        # When A and R are canonical, torsion-free and not of small order, the cofactored
        # and cofactorless equations agree, so libsodium's refusal is ZIP-215's too.
        if is_valid_point(signature[:32]) and is_valid_point(public_key):
            return False
        return zip215.verify(public_key, message, signature)
    return True


def verify_signatures(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """One verdict per (public_key, message, signature), each equal to ``verify_signature``.

    At most ``MAX_SIGNATURES`` items (``ValueError``). libsodium has no batch API, so this
    verifies one by one; the Rust backend batches.
    """
    if len(items) > MAX_SIGNATURES:
        raise ValueError(f"at most {MAX_SIGNATURES} signatures per call")
    for item in items:
        if type(item) is not tuple or len(item) != 3:
            raise TypeError("each item must be a (public_key, message, signature) tuple")
        if not all(isinstance(part, bytes) for part in item):
            raise TypeError("public_key, message and signature must be bytes")
    return [_verify(public_key, message, signature) for public_key, message, signature in items]


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The state after a valid block: what the next block of the account continues from."""

    account: bytes
    sequence: int
    hash: bytes
    balance: int
    key: bytes  # the key that must sign the next block

    def __post_init__(self) -> None:
        _check_bytes(self.account, 32, "account")
        _check_u64(self.sequence, "sequence")
        _check_bytes(self.hash, 32, "hash")
        _check_u64(self.balance, "balance")
        _check_bytes(self.key, 32, "key")


@dataclass(frozen=True, slots=True)
class ChainFailure:
    """The first refused block: its index in the given blocks, the reason and a message."""

    index: int
    reason: RejectReason
    message: str


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    """The outcome of ``verify_chain``."""

    valid_count: int  # valid blocks from the start
    head: ChainHead | None  # after the last valid block; the start if none; None if neither
    failure: ChainFailure | None  # the first refused block, if any

    @property
    def ok(self) -> bool:
        """Whether every given block is valid."""
        return self.failure is None


# The head inside the loop: (account, sequence, hash, balance, key); a tuple for speed.
_Head = tuple[bytes, int, bytes, int, bytes]


def _check_block(fields: _Fields, head: _Head | None, mint_account: bytes | None) -> _Head:
    """Check one block against the head it continues (or as an opening block): the new head.

    The checks and messages follow ``neonet_core::ledger::chain::check_block``.
    """
    account, sequence, previous, kind, amount, balance, key, payload, _, body = fields
    if head is None:
        # Before the opening block: nothing, zero balance, the account ID as the key.
        expected_account, expected_sequence, expected_previous, old_balance, current_key = (
            account,
            0,
            ZERO_HASH,
            0,
            account,
        )
    else:
        expected_account, last_sequence, expected_previous, old_balance, current_key = head
        expected_sequence = last_sequence + 1
    if account != expected_account:
        raise _Refused(RejectReason.ACCOUNT, "account does not match the chain's account")
    if sequence != expected_sequence:
        raise _Refused(RejectReason.SEQUENCE, f"sequence {sequence}, expected {expected_sequence}")
    if previous != expected_previous:
        raise _Refused(RejectReason.PREVIOUS, "previous does not match the preceding block's hash")

    if kind > _LAST_KIND:
        raise _Refused(RejectReason.KIND, f"unknown block kind {kind}")
    if sequence == 0 and kind != BlockKind.OPEN:
        raise _Refused(RejectReason.KIND, "sequence 0 must be an OPEN block")
    if kind == BlockKind.OPEN and sequence != 0:
        raise _Refused(RejectReason.KIND, "OPEN is only allowed at sequence 0")
    if kind == BlockKind.ISSUE and account != mint_account:
        raise _Refused(RejectReason.KIND, "ISSUE is only allowed on the mint account")

    if key != current_key:
        raise _Refused(RejectReason.KEY, "key is not the account's current key")
    next_key = key
    if kind == BlockKind.ROTATE_KEY:
        if len(payload) != 32:
            raise _Refused(RejectReason.KEY, "ROTATE_KEY payload must be the new 32-byte key")
        next_key = payload

    if kind == BlockKind.OPEN or kind == BlockKind.ROTATE_KEY:
        if amount != 0:
            raise _Refused(RejectReason.BALANCE, f"{BlockKind(kind).name} must have amount 0")
        expected_balance = old_balance
    elif kind in CREDITS:
        expected_balance = old_balance + amount
        if expected_balance >= _U64_LIMIT:
            raise _Refused(
                RejectReason.BALANCE,
                f"balance overflow: {old_balance} + {amount} exceeds 2^64-1",
            )
    else:
        expected_balance = old_balance - amount
        if expected_balance < 0:
            raise _Refused(
                RejectReason.BALANCE, f"insufficient balance: {old_balance} - {amount} is negative"
            )
    if balance != expected_balance:
        raise _Refused(RejectReason.BALANCE, f"balance {balance}, expected {expected_balance}")
    return (account, sequence, hash_block_body(body), balance, next_key)


def verify_chain(
    blocks: Sequence[bytes],
    *,
    mint_account: bytes | None,
    start: ChainHead | None = None,
    signatures: bool = True,
) -> ChainVerdict:
    """Verify ``blocks`` as one account's chain, from its OPEN block or from ``start``.

    ``mint_account`` is the one account allowed ISSUE blocks. Every fault of the blocks
    (including undecodable bytes) is reported in the verdict: the number of valid blocks
    before the first refused one, the head after them, and why that block was refused.
    ``ValueError`` for more than ``MAX_BLOCKS`` blocks or a bad ``mint_account``;
    ``TypeError`` for blocks that are not bytes. ``signatures=False`` leaves out the
    signature check, for a caller that verified the signatures already (in a batch).
    """
    # Argument checks in the order the Rust glue makes them.
    if len(blocks) > MAX_BLOCKS:
        raise ValueError(f"at most {MAX_BLOCKS} blocks per call")
    if mint_account is not None:
        _check_bytes(mint_account, 32, "mint_account")
    head: _Head | None = None
    if start is not None:
        head = (start.account, start.sequence, start.hash, start.balance, start.key)
    for data in blocks:
        if not isinstance(data, bytes):
            raise TypeError("each block must be bytes")

    failure = None
    valid_count = 0
    for index, data in enumerate(blocks):
        try:
            fields = _parse(data)
            new_head = _check_block(fields, head, mint_account)
        except _Refused as refusal:
            failure = ChainFailure(index, refusal.reason, refusal.message)
            break
        if signatures and not _verify(fields[6], new_head[2], fields[8]):
            failure = ChainFailure(
                index, RejectReason.SIGNATURE, "signature does not verify under the block's key"
            )
            break
        head = new_head
        valid_count += 1
    return ChainVerdict(valid_count, start if head is None else ChainHead(*head), failure)
