"""NeoBankof messages: the bank payloads of ledger blocks, committees, votes, certificates,
offline spends, receipts and fraud proofs, each with one canonical CBOR encoding.

The block itself is the core ledger block of ``docs/ledger.md`` (``neonet.core.ledger``);
the bank gives meaning to its ``payload`` per kind and adds the structures around it
(``docs/bank.md`` specifies all of them). Every decoder here accepts exactly the bytes
its encoder produces: ``neonet.core.cbor.decode`` refuses non-canonical CBOR, and the
shape checks refuse any other field types, sizes or counts (``DecodeError``, a
``RemoteProtocolError``). Hashes are BLAKE3 in derive-key mode with one context string
per structure; signatures are Ed25519 (verified under ZIP-215 by ``neonet.core.backend``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import blake3

from neonet.core import backend, cbor, ledger
from neonet.core.errors import DecodeError
from neonet.core.ledger import Block as Block
from neonet.core.ledger import BlockKind, decode_block, encode_block
from neonet.proto.bank.votes import QuorumCheck, VerifiedVotes, verify_in_batches

COMMITTEE_CONTEXT = "NeoNet 2026 bank committee v1"
# The vote contexts and the path bound are the ledger core's (``vote_roots``, both twins).
VOTE_CONTEXT = ledger.VOTE_CONTEXT
VOTE_TREE_CONTEXT = ledger.VOTE_TREE_CONTEXT
MAX_VOTE_PATH = ledger.MAX_VOTE_PATH  # a batch of up to 2**16 votes; SIGN_BATCH: 256
SPEND_CONTEXT = "NeoNet 2026 bank spend v1"
RECEIPT_CONTEXT = "NeoNet 2026 bank receipt v1"
MAX_COMMITTEE = 100
MAX_MESSAGE = 64 * 1024
_U64 = 1 << 64
_blake3 = blake3.blake3

Signer = Callable[[bytes], bytes]


def domain_hash(context: str, data: bytes) -> bytes:
    """BLAKE3 derive-key with ``context`` over ``data`` (32 bytes)."""
    return blake3.blake3(data, derive_key_context=context).digest()


def block_hash(data: bytes) -> bytes:
    """The hash of an encoded block known to be canonical (decoded once before): its body
    is ``data[1:-66]`` (docs/ledger.md), hashed without decoding."""
    return backend.hash_block_body(data[1:-66])


def _load(data: bytes, what: str) -> list[object]:
    if not isinstance(data, bytes):
        raise TypeError("data must be bytes")
    if len(data) > MAX_MESSAGE:
        raise DecodeError(f"{what} of {len(data)} bytes exceeds {MAX_MESSAGE}")
    value = cbor.decode(data)
    if type(value) is not list:
        raise DecodeError(f"{what} must be a CBOR array")
    return list(value)


def _bytes(value: object, length: int, name: str) -> bytes:
    if type(value) is not bytes or len(value) != length:
        raise DecodeError(f"{name} must be {length} bytes")
    return value


def _uint(value: object, name: str) -> int:
    if type(value) is not int or not 0 <= value < _U64:
        raise DecodeError(f"{name} must be an unsigned 64-bit integer")
    return value


def _fields(value: list[object], count: int, what: str) -> list[object]:
    if len(value) != count:
        raise DecodeError(f"{what} must have {count} fields")
    return value


# Block payloads per kind ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransferPayload:
    """TRANSFER: ``[payee: bytes32, memo: bytes <= 256]``."""

    payee: bytes
    memo: bytes = b""

    def encode(self) -> bytes:
        return cbor.encode([self.payee, self.memo])

    @classmethod
    def decode(cls, data: bytes) -> TransferPayload:
        return _transfer_payload(data)


@functools.lru_cache(maxsize=4096)
def _transfer_payload(data: bytes) -> TransferPayload:
    """``TransferPayload.decode``, remembered: a validator reads each transfer's payload
    when it votes and again when it applies the certificate (the value is immutable)."""
    payee, memo = _fields(_load(data, "transfer payload"), 2, "transfer payload")
    if type(memo) is not bytes or len(memo) > 256:
        raise DecodeError("memo must be at most 256 bytes")
    return TransferPayload(_bytes(payee, 32, "payee"), memo)


@dataclass(frozen=True, slots=True)
class ReceivePayload:
    """RECEIVE: ``[payer: bytes32, sequence: uint, transfer_hash: bytes32]``."""

    payer: bytes
    sequence: int
    transfer_hash: bytes

    def encode(self) -> bytes:
        return cbor.encode([self.payer, self.sequence, self.transfer_hash])

    @classmethod
    def decode(cls, data: bytes) -> ReceivePayload:
        payer, sequence, transfer_hash = _fields(
            _load(data, "receive payload"), 3, "receive payload"
        )
        return cls(
            _bytes(payer, 32, "payer"),
            _uint(sequence, "sequence"),
            _bytes(transfer_hash, 32, "transfer hash"),
        )


@dataclass(frozen=True, slots=True)
class PursePayload:
    """OPEN_PURSE: ``[purse_key: bytes32, cap: uint, count: uint, expiry: uint]``.

    The purse holds the block's amount; ``cap * count <= amount`` so that spends with
    distinct indexes can never exceed it, whichever POS accepts them.
    """

    purse_key: bytes
    cap: int
    count: int
    expiry: int  # seconds since the epoch; spends are refused from this time on

    def encode(self) -> bytes:
        return cbor.encode([self.purse_key, self.cap, self.count, self.expiry])

    @classmethod
    def decode(cls, data: bytes) -> PursePayload:
        key, cap, count, expiry = _fields(_load(data, "purse payload"), 4, "purse payload")
        return cls(
            _bytes(key, 32, "purse key"),
            _uint(cap, "cap"),
            _uint(count, "count"),
            _uint(expiry, "expiry"),
        )


@dataclass(frozen=True, slots=True)
class Spend:
    """An offline payment from a purse, signed by the purse key.

    ``[[purse_id: bytes32, index: uint, amount: uint, payee: bytes32, time: uint], sig]``;
    the slot is ``(purse_id, index)``; two different spends for one slot are a double spend.
    """

    purse_id: bytes
    index: int
    amount: int
    payee: bytes
    time: int
    signature: bytes = bytes(64)

    def body(self) -> list[object]:
        return [self.purse_id, self.index, self.amount, self.payee, self.time]

    def digest(self) -> bytes:
        return domain_hash(SPEND_CONTEXT, cbor.encode(self.body()))

    def signed(self, sign: Signer) -> Spend:
        return Spend(
            self.purse_id, self.index, self.amount, self.payee, self.time, sign(self.digest())
        )

    def verify(self, purse_key: bytes) -> bool:
        return backend.verify_signature(purse_key, self.digest(), self.signature)

    def encode(self) -> bytes:
        return cbor.encode([self.body(), self.signature])

    @classmethod
    def decode(cls, data: bytes) -> Spend:
        return cls.from_value(_load(data, "spend"))

    @classmethod
    def from_value(cls, value: object) -> Spend:
        if type(value) is not list:
            raise DecodeError("spend must be an array")
        body, signature = _fields(value, 2, "spend")
        if type(body) is not list:
            raise DecodeError("spend body must be an array")
        purse_id, index, amount, payee, time = _fields(body, 5, "spend body")
        return cls(
            _bytes(purse_id, 32, "purse id"),
            _uint(index, "index"),
            _uint(amount, "amount"),
            _bytes(payee, 32, "payee"),
            _uint(time, "time"),
            _bytes(signature, 64, "signature"),
        )


@dataclass(frozen=True, slots=True)
class RedeemPayload:
    """REDEEM: the spend being redeemed, ``[spend]`` (credited at most once per slot)."""

    spend: Spend

    def encode(self) -> bytes:
        return cbor.encode([[self.spend.body(), self.spend.signature]])

    @classmethod
    def decode(cls, data: bytes) -> RedeemPayload:
        (spend,) = _fields(_load(data, "redeem payload"), 1, "redeem payload")
        return cls(Spend.from_value(spend))


@dataclass(frozen=True, slots=True)
class ClaimPayload:
    """CLAIM: ``[spend, claim_index: uint, frozen_sequence: uint]``.

    A payee whose offline spend lost its double-spent slot (another spend of the slot was
    redeemed) claims it from the purse owner's frozen balance. ``claim_index`` numbers
    the claims on that owner (0, 1, ...: one certificate each, applied in order);
    ``frozen_sequence`` is a certified sequence of the owner's chain that the claim is
    judged against (validators and ledgers wait until they know it).
    """

    spend: Spend
    claim_index: int
    frozen_sequence: int

    def encode(self) -> bytes:
        spend = [self.spend.body(), self.spend.signature]
        return cbor.encode([spend, self.claim_index, self.frozen_sequence])

    @classmethod
    def decode(cls, data: bytes) -> ClaimPayload:
        spend, index, sequence = _fields(_load(data, "claim payload"), 3, "claim payload")
        return cls(
            Spend.from_value(spend), _uint(index, "claim index"), _uint(sequence, "sequence")
        )


@dataclass(frozen=True, slots=True)
class RefundPayload:
    """REFUND: ``[purse_id: bytes32]``; the amount is the purse's whole remainder."""

    purse_id: bytes

    def encode(self) -> bytes:
        return cbor.encode([self.purse_id])

    @classmethod
    def decode(cls, data: bytes) -> RefundPayload:
        (purse_id,) = _fields(_load(data, "refund payload"), 1, "refund payload")
        return cls(_bytes(purse_id, 32, "purse id"))


# Committee, votes and certificates ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Committee:
    """The 3f+1 validators of an epoch, signed by the bank's root key.

    ``[[epoch: uint, validators: [bytes32, ...]], root_signature]``. The signature is over
    ``domain_hash(COMMITTEE_CONTEXT, encode(body))``; that hash is the committee ID,
    which every vote binds so that a vote cannot be moved to another committee.
    """

    epoch: int
    validators: tuple[bytes, ...]
    signature: bytes = bytes(64)

    def __post_init__(self) -> None:
        n = len(self.validators)
        if not 4 <= n <= MAX_COMMITTEE or (n - 1) % 3:
            raise ValueError("a committee has 3f+1 validators, f >= 1")
        if len(set(self.validators)) != n:
            raise ValueError("committee validators must be distinct")

    @property
    def faulty(self) -> int:
        """f: how many faulty validators the committee tolerates."""
        return (len(self.validators) - 1) // 3

    @property
    def quorum(self) -> int:
        return 2 * self.faulty + 1

    def body(self) -> list[object]:
        return [self.epoch, list(self.validators)]

    def id(self) -> bytes:
        return domain_hash(COMMITTEE_CONTEXT, cbor.encode(self.body()))

    def signed(self, sign: Signer) -> Committee:
        return Committee(self.epoch, self.validators, sign(self.id()))

    def verify(self, root_key: bytes) -> bool:
        return backend.verify_signature(root_key, self.id(), self.signature)

    def encode(self) -> bytes:
        return cbor.encode([self.body(), self.signature])

    @classmethod
    def decode(cls, data: bytes) -> Committee:
        body, signature = _fields(_load(data, "committee"), 2, "committee")
        if type(body) is not list:
            raise DecodeError("committee body must be an array")
        epoch, validators = _fields(body, 2, "committee body")
        if type(validators) is not list:
            raise DecodeError("validators must be an array")
        keys = tuple(_bytes(key, 32, "validator key") for key in validators)
        try:
            return cls(_uint(epoch, "epoch"), keys, _bytes(signature, 64, "signature"))
        except ValueError as exc:
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError(str(exc)) from None


def vote_message(committee_id: bytes, block_hash: bytes) -> bytes:
    """What a validator signs to vote for one block, bound to the committee; also the
    leaf of a batch vote's Merkle tree (``vote_tree``)."""
    return domain_hash(VOTE_CONTEXT, committee_id + block_hash)


# A vote in a certificate: ``(validator_index, signature)`` signed over the block's vote
# message itself (a direct vote), or ``(validator_index, signature, sides, path)`` signed
# over the root of a batch's vote tree, with the path from the block's leaf (1..16
# siblings of 32 bytes in one byte string).
CertificateVote = tuple[int, bytes] | tuple[int, bytes, int, bytes]


def vote_value(vote: CertificateVote) -> list[object]:
    """A certificate vote's CBOR value: ``[index, signature]`` or ``[index, signature,
    sides, path]``."""
    return list(vote)


def _vote_from_value(vote: object) -> CertificateVote:
    if type(vote) is not list:
        raise DecodeError("a vote must be an array")
    if len(vote) == 2:
        index, signature = vote
        return (_uint(index, "validator index"), _bytes(signature, 64, "signature"))
    index, signature, sides, path = _fields(vote, 4, "vote")
    if type(path) is not bytes or not 0 < len(path) <= 32 * MAX_VOTE_PATH or len(path) % 32:
        raise DecodeError(f"a batch vote's path is 1..{MAX_VOTE_PATH} nodes of 32 bytes")
    if type(sides) is not int or not 0 <= sides < 1 << (len(path) >> 5):
        raise DecodeError("vote sides must be an unsigned integer below 2**depth")
    return (_uint(index, "validator index"), _bytes(signature, 64, "signature"), sides, path)


@dataclass(frozen=True, slots=True)
class Certificate:
    """A block with the votes of at least 2f+1 distinct validators.

    ``[block: bytes, [vote, ...]]``, each vote ``[validator_index: uint, signature:
    bytes64]`` (direct) or ``[validator_index, signature, sides: uint, path: bytes]``
    (batched, 1..16 nodes of 32 bytes), indexes strictly increasing. Well-formedness is
    checked here; ``check_certificate`` says if it is valid.
    """

    block: bytes
    votes: tuple[CertificateVote, ...]
    # ``block`` decoded, set only by ``from_value`` (from ``block`` itself or a trusted
    # ``known`` map); not a constructor argument, so no caller can pair bytes with
    # another block (not part of the value).
    decoded_block: Block | None = field(default=None, compare=False, repr=False, init=False)

    def votes_value(self) -> list[list[object]]:
        return [vote_value(vote) for vote in self.votes]

    def to_value(self) -> list[object]:
        """The CBOR value ``[block, [vote, ...]]``, built anew for each caller (a caller
        may change it without touching the certificate or another caller's copy)."""
        return [self.block, self.votes_value()]

    def encode(self) -> bytes:
        return backend.cbor_encode(self.to_value())  # canonical on both backends

    @classmethod
    def decode(cls, data: bytes) -> Certificate:
        return cls.from_value(_load(data, "certificate"))

    @classmethod
    def from_value(cls, value: object, known: Mapping[bytes, Block] | None = None) -> Certificate:
        """``known``: blocks decoded before (encoded -> decoded), not parsed again; it
        must hold only blocks decoded from their own key (``Validator.recent_blocks``)."""
        if type(value) is not list:
            raise DecodeError("certificate must be an array")
        block, votes = _fields(value, 2, "certificate")
        if type(block) is not bytes or type(votes) is not list or len(votes) > MAX_COMMITTEE:
            raise DecodeError("certificate must be [block bytes, votes (at most 100)]")
        decoded_block = None if known is None else known.get(block)
        if decoded_block is None:
            decoded_block = decode_block(block)  # DecodeError if not a canonical block
        parsed = [_vote_from_value(vote) for vote in votes]
        if any(a[0] >= b[0] for a, b in itertools.pairwise(parsed)):
            raise DecodeError("vote indexes must be strictly increasing")
        certificate = cls(block, tuple(parsed))
        object.__setattr__(certificate, "decoded_block", decoded_block)
        return certificate

    def decoded(self) -> Block:
        if self.decoded_block is not None:
            return self.decoded_block
        return decode_block(self.block)


def check_certificate(certificate: Certificate, committee: Committee) -> bool:
    """Whether at least 2f+1 distinct committee members signed the certificate's block."""
    return check_certificates([certificate], committee)[0]


def check_certificates(
    certificates: Sequence[Certificate],
    committee: Committee,
    implementation: backend.Implementation = backend.ACTIVE,
    verified: VerifiedVotes | None = None,
) -> list[bool]:
    """Which certificates hold 2f+1 valid votes of distinct committee members
    (``QuorumCheck``, its signatures in one batch verifier call per 4096: the Rust
    batch verifier on the native backend). ``verified``: triples known to verify
    (skipped), and where the ones that do are added."""
    check = QuorumCheck(certificates, committee, implementation, verified)
    return check.finish(verify_in_batches(check.pending, implementation))


# Receipts and offline tokens ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receipt:
    """A POS's signed acknowledgement of an accepted spend.

    ``[[spend_hash: bytes32, pos_key: bytes32, accepted_at: uint], signature]``.
    """

    spend_hash: bytes
    pos_key: bytes
    accepted_at: int
    signature: bytes = bytes(64)

    def body(self) -> list[object]:
        return [self.spend_hash, self.pos_key, self.accepted_at]

    def digest(self) -> bytes:
        return domain_hash(RECEIPT_CONTEXT, cbor.encode(self.body()))

    def signed(self, sign: Signer) -> Receipt:
        return Receipt(self.spend_hash, self.pos_key, self.accepted_at, sign(self.digest()))

    def verify(self) -> bool:
        return backend.verify_signature(self.pos_key, self.digest(), self.signature)

    def encode(self) -> bytes:
        return cbor.encode([self.body(), self.signature])

    @classmethod
    def decode(cls, data: bytes) -> Receipt:
        body, signature = _fields(_load(data, "receipt"), 2, "receipt")
        if type(body) is not list:
            raise DecodeError("receipt body must be an array")
        spend_hash, pos_key, accepted_at = _fields(body, 3, "receipt body")
        return cls(
            _bytes(spend_hash, 32, "spend hash"),
            _bytes(pos_key, 32, "pos key"),
            _uint(accepted_at, "accepted at"),
            _bytes(signature, 64, "signature"),
        )


@dataclass(frozen=True, slots=True)
class OfflinePayment:
    """What travels to a POS by any channel: ``[purse_certificate, spend]``."""

    purse: Certificate
    spend: Spend

    def encode(self) -> bytes:
        return cbor.encode([self.purse.to_value(), [self.spend.body(), self.spend.signature]])

    @classmethod
    def decode(cls, data: bytes) -> OfflinePayment:
        purse, spend = _fields(_load(data, "offline payment"), 2, "offline payment")
        return cls(Certificate.from_value(purse), Spend.from_value(spend))


# Fraud proofs -----------------------------------------------------------------------------

PROOF_BLOCKS = 0
PROOF_SPENDS = 1


@dataclass(frozen=True, slots=True)
class FraudProof:
    """Two valid, different blocks (or spends) for one slot: proof of a double spend.

    ``[0, block_a, block_b, previous_certificate | null]`` for blocks of one (account,
    sequence): the certificate of the block before fixes the key that had to sign both
    (``null`` at sequence 0, where the key is the account ID). ``[1, spend_a, spend_b,
    purse_certificate]`` for spends of one (purse, index). The two items are in byte
    order, so a proof has one encoding. ``check_fraud_proof`` verifies it.
    """

    kind: int
    first: bytes
    second: bytes
    evidence: Certificate | None

    def encode(self) -> bytes:
        evidence = None if self.evidence is None else self.evidence.to_value()
        return cbor.encode([self.kind, self.first, self.second, evidence])

    @classmethod
    def decode(cls, data: bytes) -> FraudProof:
        kind, first, second, evidence = _fields(_load(data, "fraud proof"), 4, "fraud proof")
        if kind not in (PROOF_BLOCKS, PROOF_SPENDS) or type(kind) is not int:
            raise DecodeError("unknown fraud proof kind")
        if type(first) is not bytes or type(second) is not bytes or not first < second:
            raise DecodeError("fraud proof items must be two byte strings in increasing order")
        certificate = None if evidence is None else Certificate.from_value(evidence)
        if kind == PROOF_SPENDS and certificate is None:
            raise DecodeError("a spend fraud proof needs the purse certificate")
        return cls(kind, first, second, certificate)

    @classmethod
    def of_blocks(cls, a: bytes, b: bytes, previous: Certificate | None) -> FraudProof:
        first, second = sorted((a, b))
        return cls(PROOF_BLOCKS, first, second, previous)

    @classmethod
    def of_spends(cls, a: Spend, b: Spend, purse: Certificate) -> FraudProof:
        first, second = sorted((a.encode(), b.encode()))
        return cls(PROOF_SPENDS, first, second, purse)

    def id(self) -> bytes:
        return domain_hash("NeoNet 2026 bank fraud proof v1", self.encode())


def check_fraud_proof(proof: FraudProof, committee: Committee) -> bytes | None:
    """The account a valid proof convicts, or ``None`` if the proof does not hold.

    Anyone holding the committee can run this, offline, without any chain.
    """
    try:
        if proof.kind == PROOF_BLOCKS:
            return _check_block_proof(proof, committee)
        return _check_spend_proof(proof, committee)
    except DecodeError:
        return None


def _check_block_proof(proof: FraudProof, committee: Committee) -> bytes | None:
    a, b = decode_block(proof.first), decode_block(proof.second)
    if a.account != b.account or a.sequence != b.sequence or a.hash() == b.hash():
        return None
    if a.previous != b.previous or a.key != b.key:
        # Two continuations of different predecessors: one of them is not on the chain.
        return None
    if _claim_replaces_redeem(a, b) or _claim_replaces_redeem(b, a):
        return None
    if proof.evidence is None:
        if a.sequence != 0 or a.key != a.account or a.previous != bytes(32):
            return None
    else:
        if not check_certificate(proof.evidence, committee):
            return None
        before = proof.evidence.decoded()
        if before.account != a.account or before.sequence + 1 != a.sequence:
            return None
        if before.hash() != a.previous:
            return None
        next_key = before.payload if before.kind == BlockKind.ROTATE_KEY else before.key
        if next_key != a.key:
            return None
    items = [(a.key, a.hash(), a.signature), (b.key, b.hash(), b.signature)]
    if not all(backend.verify_signatures(items)):
        return None
    return a.account


def _claim_replaces_redeem(redeem: Block, claim: Block) -> bool:
    """A REDEEM and the CLAIM of the same spend at one slot are no double spend: the
    claim replaces a REDEEM that lost its purse slot (docs/bank.md, "Claims"), and at most
    one of the two can ever be certified."""
    if redeem.kind != BlockKind.REDEEM or claim.kind != BlockKind.CLAIM:
        return False
    return RedeemPayload.decode(redeem.payload).spend == ClaimPayload.decode(claim.payload).spend


def _check_spend_proof(proof: FraudProof, committee: Committee) -> bytes | None:
    assert proof.evidence is not None  # decode guarantees it
    a, b = Spend.decode(proof.first), Spend.decode(proof.second)
    if (a.purse_id, a.index) != (b.purse_id, b.index) or a.digest() == b.digest():
        return None
    if not check_certificate(proof.evidence, committee):
        return None
    purse_block = proof.evidence.decoded()
    if purse_block.kind != BlockKind.OPEN_PURSE or purse_block.hash() != a.purse_id:
        return None
    purse = PursePayload.decode(purse_block.payload)
    if not (a.verify(purse.purse_key) and b.verify(purse.purse_key)):
        return None
    return purse_block.account


def encode_block_list(blocks: Sequence[Block]) -> list[bytes]:
    return [encode_block(block) for block in blocks]
