"""A NeoBankof validator: signs at most one block per (account, sequence), durably first.

Sans-I/O (``docs/bank.md``, "Validators"). A validator of the committee keeps its own
``BankLedger`` (fed with certificates) and answers sign requests: a block that continues
the account's certified head, passes the core chain checks and the bank rules, and does
not conflict with an earlier vote gets a vote (an Ed25519 signature over the committee
ID and the block hash). The vote is recorded through the injected ``VoteStore`` before
the signature leaves the engine, so a validator that crashes and restarts cannot sign a
second block for the same slot. REDEEM blocks also lock their purse slot, so at most
one REDEEM per slot can gather a quorum. A conflicting request is a double spend: the
validator builds the fraud proof, freezes the account and refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from neonet.core import backend
from neonet.core.errors import DecodeError
from neonet.core.ledger import Block, BlockKind, ChainHead, decode_block
from neonet.proto.bank.messages import (
    Certificate,
    Committee,
    FraudProof,
    RedeemPayload,
    Signer,
    Spend,
    block_hash,
    vote_message,
)
from neonet.proto.bank.state import Applied, BankLedger, BankRuleError

MAX_REMEMBERED_VOTES = 65_536


class VoteStore(Protocol):
    """Durable votes. ``record`` must be on disk before it returns ``None``."""

    def record(
        self, account: bytes, sequence: int, block: bytes, slot: tuple[bytes, int] | None
    ) -> bytes | None:
        """Record a vote for ``block`` at (account, sequence) and, for a REDEEM, its purse
        slot; if either already holds a different block, record nothing and return that
        block. Voting again for the same block is allowed (returns ``None``)."""
        ...


class MemoryVoteStore:
    """A ``VoteStore`` in memory (tests; a crash loses it)."""

    def __init__(self) -> None:
        self.votes: dict[tuple[bytes, int], bytes] = {}
        self.slots: dict[tuple[bytes, int], bytes] = {}

    def record(
        self, account: bytes, sequence: int, block: bytes, slot: tuple[bytes, int] | None
    ) -> bytes | None:
        earlier = self.votes.get((account, sequence))
        if earlier is not None and earlier != block:
            return earlier
        if slot is not None:
            holder = self.slots.get(slot)
            if holder is not None and holder != block:
                return holder
            self.slots[slot] = block
        self.votes[(account, sequence)] = block
        return None


@dataclass(frozen=True, slots=True)
class Vote:
    validator: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a validator did not sign; ``proof`` when the request revealed a double spend."""

    reason: str
    proof: FraudProof | None = None
    behind: int | None = None  # the sequence this validator's certified chain expects


class Validator:
    """One committee member's signing engine."""

    def __init__(
        self,
        committee: Committee,
        index: int,
        sign: Signer,
        mint_account: bytes,
        store: VoteStore,
    ) -> None:
        if not 0 <= index < len(committee.validators):
            raise ValueError("validator index outside the committee")
        self.committee = committee
        self.index = index
        self._sign = sign
        self._committee_id = committee.id()
        self.store = store
        self.ledger = BankLedger(committee, mint_account)
        self._voted: dict[bytes, ChainHead] = {}  # recent votes: block hash -> head after

    def handle_certificate(self, certificate: Certificate) -> Applied:
        # A block this validator voted for was chain-checked then: skip the second check.
        return self.ledger.apply(certificate, self._voted.get(block_hash(certificate.block)))

    def handle_fraud_proof(self, proof: FraudProof) -> bytes | None:
        return self.ledger.apply_fraud_proof(proof)

    def handle_sign_request(self, data: bytes) -> Vote | Refusal:
        """Vote for the encoded block ``data``, or say why not (never raises on bad input)."""
        try:
            block = decode_block(data)
        except DecodeError as exc:
            return Refusal(f"not a block: {exc}")
        ledger = self.ledger
        if block.account in ledger.frozen:
            return Refusal("the account is frozen", ledger.frozen[block.account])
        head = ledger.head(block.account)
        expected = 0 if head is None else head.sequence + 1
        if block.sequence < expected:
            return self._revote(block, data)
        if block.sequence != expected:
            return Refusal(
                f"sequence {block.sequence}, the certified chain expects {expected}",
                behind=expected,
            )
        verdict = backend.verify_chain([data], mint_account=ledger.mint_account, start=head)
        if verdict.failure is not None:
            return Refusal(f"chain check: {verdict.failure.message}")
        try:
            ledger.check_block_rules(block)
        except BankRuleError as exc:
            return Refusal(str(exc), self._redeemed_proof(block))
        slot = None
        if block.kind == BlockKind.REDEEM:
            spend = RedeemPayload.decode(block.payload).spend
            slot = (spend.purse_id, spend.index)
        # Durable before the signature exists: a restart cannot sign a second block here.
        conflicting = self.store.record(block.account, block.sequence, data, slot)
        if conflicting is not None:
            return self._conflict(data, conflicting)
        voted = block_hash(data)
        signature = self._sign(vote_message(self._committee_id, voted))
        if verdict.head is not None:
            if len(self._voted) >= MAX_REMEMBERED_VOTES:
                del self._voted[next(iter(self._voted))]
            self._voted[voted] = verdict.head
        return Vote(self.index, signature)

    def _revote(self, block: Block, data: bytes) -> Vote | Refusal:
        """A block already certified: vote for it again (a wallet that crashed after the
        certificate formed resends it to rebuild the certificate it never stored)."""
        certified = self.ledger.certificate_at(block.account, block.sequence)
        if certified is None:
            return Refusal("this slot is behind the certified chain")
        if certified.block != data:
            # A second signed block for a certified slot: a double spend if it is valid.
            return self._conflict(data, certified.block)
        if self.store.record(block.account, block.sequence, data, None) is not None:
            return Refusal("this validator voted for another block at this slot")
        return Vote(self.index, self._sign(vote_message(self._committee_id, block.hash())))

    def _conflict(self, data: bytes, conflicting: bytes) -> Refusal:
        block, other = decode_block(data), decode_block(conflicting)
        if (other.account, other.sequence) == (block.account, block.sequence):
            previous = (
                None
                if block.sequence == 0
                else self.ledger.certificate_at(block.account, block.sequence - 1)
            )
            proof = FraudProof.of_blocks(data, conflicting, previous)
            if self.ledger.apply_fraud_proof(proof) is not None:
                return Refusal("a different block holds this slot: double spend", proof)
            return Refusal("a different block holds this slot")
        # Two REDEEM blocks for one purse slot: a double spend if the spends differ.
        mine = RedeemPayload.decode(block.payload).spend
        theirs = RedeemPayload.decode(other.payload).spend
        if mine.digest() == theirs.digest():
            return Refusal("this spend is already being redeemed")
        return Refusal(
            "purse slot already redeemed by another spend", self._spend_proof(mine, theirs)
        )

    def _redeemed_proof(self, block: Block) -> FraudProof | None:
        """For a REDEEM of a slot already redeemed by another spend: the double-spend proof."""
        if block.kind != BlockKind.REDEEM:
            return None
        try:
            spend = RedeemPayload.decode(block.payload).spend
        except DecodeError:
            return None
        winner = self.ledger.redeemed_spends.get((spend.purse_id, spend.index))
        if winner is None or winner.digest() == spend.digest():
            return None
        return self._spend_proof(spend, winner)

    def _spend_proof(self, a: Spend, b: Spend) -> FraudProof | None:
        purse = self.ledger.purses.get(a.purse_id)
        if purse is None:
            return None
        proof = FraudProof.of_spends(a, b, purse.certificate)
        return proof if self.ledger.apply_fraud_proof(proof) is not None else None


def assemble_certificate(
    block: bytes, votes: list[Vote], committee: Committee
) -> Certificate | None:
    """A certificate from distinct validators' votes, once there are 2f+1 of them."""
    by_index = {vote.validator: vote.signature for vote in votes}
    if len(by_index) < committee.quorum:
        return None
    return Certificate(block, tuple(sorted(by_index.items())))
