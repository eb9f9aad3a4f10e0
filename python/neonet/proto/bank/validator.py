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

Claims and refunds (``docs/bank.md``, "Claims" and "Refunds") take locks in the same
durable store: a CLAIM locks ``(claim_lock(owner), claim_index)``, so claims on one frozen
owner are certified one per index, in order; a REFUND locks ``(purse_id,
REFUND_POSITION)`` and is refused while a REDEEM this validator voted for is pending, and a
REDEEM is refused once that lock is taken or the refund time has come, so that no redeem
and refund of one purse both gather a quorum.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from neonet.core import backend
from neonet.core.errors import DecodeError
from neonet.core.ledger import Block, BlockKind, ChainHead, decode_block
from neonet.proto.bank.messages import (
    Certificate,
    CertificateVote,
    ClaimPayload,
    Committee,
    FraudProof,
    RedeemPayload,
    RefundPayload,
    Signer,
    Spend,
    block_hash,
    domain_hash,
    vote_message,
)
from neonet.proto.bank.state import Applied, BankLedger, BankRuleError, CertificateArchive
from neonet.proto.bank.votes import vote_tree_root
from neonet.proto.bank.wire import PurseStatus

MAX_REMEMBERED_VOTES = 65_536
MAX_RECENT_BLOCKS = 8_192  # decoded blocks kept for their certificates (~0.7 KiB each)
REFUND_POSITION = (1 << 63) - 1  # a REFUND's purse lock (spend indexes < 10000; SQLite int)
DEFAULT_REFUND_GRACE = 7 * 24 * 3600  # seconds after expiry left for late redemptions


def claim_lock(owner: bytes) -> bytes:
    """The lock key of the claims on ``owner`` (positions are claim indexes)."""
    return domain_hash("NeoNet 2026 bank claim lock v1", owner)


class VoteStore(Protocol):
    """Durable votes. ``record`` must be on disk before it returns ``None``."""

    def record(
        self, account: bytes, sequence: int, block: bytes, slot: tuple[bytes, int] | None
    ) -> bytes | None:
        """Record a vote for ``block`` at (account, sequence) and, for a REDEEM, its purse
        slot; if either already holds a different block, record nothing and return that
        block. Voting again for the same block is allowed (returns ``None``)."""
        ...

    def voted(self, account: bytes, sequence: int) -> bytes | None:
        """The block voted for at (account, sequence), if any."""
        ...

    def replace(
        self, account: bytes, sequence: int, block: bytes, slot: tuple[bytes, int] | None
    ) -> bytes | None:
        """Replace the vote at (account, sequence) by ``block`` (a CLAIM replacing a REDEEM
        that lost its purse slot); if ``slot`` holds another block, change nothing and
        return that block."""
        ...

    def purse_locks(self, purse_id: bytes) -> dict[int, bytes]:
        """The locks held under ``purse_id`` (a purse, or a claim lock key): position ->
        block."""
        ...

    def settle(self, account: bytes, head: int) -> None:
        """The certified chain of ``account`` reached ``head``: a store may drop its votes at
        or below it from memory (``voted``/``record`` must still answer for them: a block
        there reaches ``record`` again only as a re-vote of a certified block)."""
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

    def voted(self, account: bytes, sequence: int) -> bytes | None:
        return self.votes.get((account, sequence))

    def replace(
        self, account: bytes, sequence: int, block: bytes, slot: tuple[bytes, int] | None
    ) -> bytes | None:
        if slot is not None:
            holder = self.slots.setdefault(slot, block)
            if holder != block:
                return holder
        self.votes[(account, sequence)] = block
        return None

    def purse_locks(self, purse_id: bytes) -> dict[int, bytes]:
        return {i: block for (key, i), block in self.slots.items() if key == purse_id}

    def settle(self, account: bytes, head: int) -> None:
        """Nothing to drop: memory is this store's only record."""


@dataclass(frozen=True, slots=True)
class Vote:
    """A vote: ``signature`` over the block's vote message (direct), or over the root of a
    batch's vote tree with the leaf's ``sides`` and ``path`` (batched). Inside a
    ``VoteBatch`` not yet signed, ``signature`` is empty."""

    validator: int
    signature: bytes
    proof: FraudProof | None = None  # a CLAIM vote freezes the owner: keep the proof
    sides: int = 0
    path: bytes = b""


class VoteBatch:
    """The votes of one SIGN_BATCH, signed once (``Validator.sign_batch``).

    Only the engine adds leaves, each after its vote is recorded in the vote store: the
    batch signature commits to every leaf, so it must never cover an unrecorded one.
    """

    __slots__ = ("leaves", "signed")

    def __init__(self) -> None:
        self.leaves: list[bytes] = []  # vote messages, in the order the votes were given
        self.signed = False


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
        *,
        refund_grace: int = DEFAULT_REFUND_GRACE,
        archive: CertificateArchive | None = None,
    ) -> None:
        """``archive``: where applied certificates are kept (``SqliteVoteStore`` is one);
        with it the ledger holds only a short tail of each chain in memory."""
        if not 0 <= index < len(committee.validators):
            raise ValueError("validator index outside the committee")
        self.committee = committee
        self.index = index
        self._sign = sign
        self._committee_id = committee.id()
        self.store = store
        self.refund_grace = refund_grace
        self.ledger = BankLedger(committee, mint_account, archive=archive)
        # Every certificate applied (also from the parked queue): the votes at or below the
        # account's certified head may leave memory (they are on disk only).
        self.ledger.on_advanced = store.settle
        # Recent votes: block hash -> head after. Ordered dicts: evicting the oldest entry
        # of a plain dict makes its next iteration skip every deleted slot.
        self._voted: OrderedDict[bytes, ChainHead] = OrderedDict()
        # Recent blocks voted for, encoded -> decoded: their certificates come next, and
        # a decoder given these bytes need not parse them again (``wire.parse_request``);
        # an entry goes when its certificate is taken.
        self.recent_blocks: OrderedDict[bytes, Block] = OrderedDict()

    def handle_certificate(self, certificate: Certificate, quorum_checked: bool = False) -> Applied:
        """Apply a certificate; ``quorum_checked`` when the caller verified its quorum
        (a batch verification of many certificates' votes)."""
        # A block this validator voted for was chain-checked then: skip the second check.
        # Once its certificate is taken (applied, parked, a duplicate or a conflict), the
        # entry is not needed again, so ``_voted`` holds only votes still waiting for
        # their certificate; a rejected one (forged votes) leaves it for the real one.
        # Parked: the queue applies it later without ``verified`` (nor can a block voted
        # for park: it met the bank rules then, and nothing it found goes missing).
        # Conflict: another block holds that slot for good.
        voted = block_hash(certificate.block)
        verified = self._voted.get(voted)
        outcome = self.ledger.apply(certificate, verified, quorum_checked=quorum_checked)
        if outcome is not Applied.REJECTED:
            if verified is not None:
                del self._voted[voted]
            self.recent_blocks.pop(certificate.block, None)
        return outcome

    def handle_fraud_proof(self, proof: FraudProof) -> bytes | None:
        return self.ledger.apply_fraud_proof(proof)

    def decode(self, data: bytes) -> Block:
        """``data`` decoded (``DecodeError`` if it is not a canonical block), by the
        engine: remembered in ``recent_blocks``, so that the certificate that follows is
        not parsed again. Pass it on as ``handle_sign_request(data, decoded=...)``."""
        block = self.recent_blocks.get(data)
        if block is None:
            block = decode_block(data)
            self._remember_block(data, block)
        return block

    def _remember_block(self, data: bytes, block: Block) -> None:
        recent = self.recent_blocks
        if len(recent) >= MAX_RECENT_BLOCKS:
            recent.popitem(last=False)
        recent[data] = block

    def handle_sign_request(
        self,
        data: bytes,
        now: int | None = None,
        *,
        signature_checked: bool = False,
        batch: VoteBatch | None = None,
        decoded: Block | None = None,
    ) -> Vote | Refusal:
        """Vote for the encoded block ``data``, or say why not (never raises on bad input).

        ``now`` (seconds since the epoch) dates the request: REFUND needs it (refused
        without it) and REDEEM is refused from the purse's refund time on.
        ``signature_checked``: the caller verified the block's signature under the key
        the block names (in a batch); the chain check still requires that key.
        ``batch``: add the vote as the next leaf of ``batch`` instead of signing it (the
        returned ``Vote`` has an empty signature; ``sign_batch`` signs them all).
        ``decoded``: ``data`` decoded already by the caller (``decode_block``, or
        ``Validator.decode``, which also remembers it); used for this call only, never
        kept in ``recent_blocks`` (whose blocks the certificate decoder trusts without
        parsing).
        """
        if batch is not None and batch.signed:
            # Before anything is recorded: a vote the signed root cannot cover is no vote.
            raise ValueError("this vote batch is signed already")
        own = decoded is None  # only a block decoded here may enter ``recent_blocks``
        if decoded is not None:
            block = decoded
        else:
            try:
                block = decode_block(data)
            except DecodeError as exc:
                return Refusal(f"not a block: {exc}")
        ledger = self.ledger
        if block.account in ledger.frozen and block.kind != BlockKind.REFUND:
            # A refund only adds to a frozen owner's funds, which claimants are paid from.
            return Refusal("the account is frozen", ledger.frozen[block.account])
        head = ledger.head(block.account)
        expected = 0 if head is None else head.sequence + 1
        if block.sequence < expected:
            return self._revote(block, data, batch)
        if block.sequence != expected:
            return Refusal(
                f"sequence {block.sequence}, the certified chain expects {expected}",
                behind=expected,
            )
        verdict = backend.verify_chain(
            [data], mint_account=ledger.mint_account, start=head, signatures=not signature_checked
        )
        if verdict.failure is not None:
            return Refusal(f"chain check: {verdict.failure.message}")
        try:
            ledger.check_block_rules(block)
        except BankRuleError as exc:
            return Refusal(str(exc), self._redeemed_proof(block))
        slot = None
        proof = None
        refusal = None
        if block.kind == BlockKind.REDEEM:
            spend = RedeemPayload.decode(block.payload).spend
            slot = (spend.purse_id, spend.index)
            refusal = self._redeem_refusal(spend, now)
        elif block.kind == BlockKind.CLAIM:
            claim = ClaimPayload.decode(block.payload)
            refusal, proof = self._claim_refusal(block, claim)
            owner = ledger.purses[claim.spend.purse_id].owner
            slot = (claim_lock(owner), claim.claim_index)
        elif block.kind == BlockKind.REFUND:
            purse_id = RefundPayload.decode(block.payload).purse_id
            refusal = self._refund_refusal(purse_id, now)
            slot = (purse_id, REFUND_POSITION)
        if refusal is not None:
            return refusal
        # Durable before the signature exists: a restart cannot sign a second block here.
        conflicting = self.store.record(block.account, block.sequence, data, slot)
        if conflicting is not None and self._replaces_lost_redeem(block, conflicting):
            conflicting = self.store.replace(block.account, block.sequence, data, slot)
        if conflicting is not None:
            return self._conflict(data, conflicting)
        if proof is not None:
            ledger.apply_fraud_proof(proof)  # voted for a claim: the owner stays frozen
        voted = block_hash(data)
        signature = self._vote(vote_message(self._committee_id, voted), batch)
        if verdict.head is not None:
            if len(self._voted) >= MAX_REMEMBERED_VOTES:
                self._voted.popitem(last=False)
            self._voted[voted] = verdict.head
            if own:  # a caller's ``decoded`` is trusted for this call, never cached
                self._remember_block(data, block)
        return Vote(self.index, signature, proof)

    def _replaces_lost_redeem(self, block: Block, earlier: bytes) -> bool:
        """Whether ``block`` is a CLAIM replacing the REDEEM ``earlier`` of the same spend
        at the same slot, whose purse slot another spend's REDEEM won: that REDEEM can
        never be certified (the two REDEEM quorums would share an honest validator, which
        locks a purse slot once), so the slot is free for the claim."""
        if block.kind != BlockKind.CLAIM:
            return False
        old = decode_block(earlier)
        if (old.account, old.sequence, old.kind) != (
            block.account,
            block.sequence,
            BlockKind.REDEEM,
        ):
            return False
        spend = RedeemPayload.decode(old.payload).spend
        if ClaimPayload.decode(block.payload).spend != spend:
            return False
        winner = self.ledger.redeemed.get((spend.purse_id, spend.index))
        return winner is not None and winner != spend.digest()

    def _redeem_refusal(self, spend: Spend, now: int | None) -> Refusal | None:
        terms = self.ledger.purses[spend.purse_id].terms
        if now is not None and now >= terms.expiry + self.refund_grace:
            return Refusal("too late to redeem: the purse's remainder goes back to its owner")
        if REFUND_POSITION in self.store.purse_locks(spend.purse_id):
            return Refusal("the purse is being refunded")
        return None

    def _refund_refusal(self, purse_id: bytes, now: int | None) -> Refusal | None:
        purse = self.ledger.purses[purse_id]
        due = purse.terms.expiry + self.refund_grace
        if now is None or now < due:
            return Refusal(f"the purse can be refunded from {due}")
        for position in self.store.purse_locks(purse_id):
            if position != REFUND_POSITION and (purse_id, position) not in self.ledger.redeemed:
                # A REDEEM this validator voted for may still be certified: wait for it.
                return Refusal("a redeem of this purse is pending")
        return None

    def _claim_refusal(
        self, block: Block, claim: ClaimPayload
    ) -> tuple[Refusal | None, FraudProof | None]:
        """Whether the owner's frozen funds cover the claim, at every balance this
        validator knows from ``frozen_sequence`` on (its certified blocks and its pending
        vote): any block certified later had a voter among the claim's quorum, which then
        counted that block's balance, so no later block leaves less than was claimed."""
        purse, winner = self.ledger.check_claim(block, claim)
        available = self.claimable(purse.owner, claim.frozen_sequence)
        if block.amount > available:
            return Refusal(f"the owner's frozen funds cover {available}"), None
        return None, FraudProof.of_spends(claim.spend, winner, purse.certificate)

    def claimable(self, owner: bytes, frozen_sequence: int) -> int:
        """What claims judged at ``frozen_sequence`` may still take from ``owner``: the
        lowest balance of its certified blocks from there on and of the block this
        validator voted for next, minus what claims took already."""
        ledger = self.ledger
        state = ledger.accounts.get(owner)
        if state is None or state.head.sequence < frozen_sequence:
            return 0
        certified = ledger.chain(owner, frozen_sequence, state.head.sequence - frozen_sequence + 1)
        balances = [c.decoded().balance for c in certified]
        pending = self.store.voted(owner, state.head.sequence + 1)
        if pending is not None:
            balances.append(decode_block(pending).balance)
        return max(min(balances) - ledger.claims_paid.get(owner, 0), 0)

    def purse_status(self, purse_id: bytes, index: int) -> PurseStatus | None:
        """This validator's view of a purse, for claimants and refunders (PURSE)."""
        ledger = self.ledger
        purse = ledger.purses.get(purse_id)
        if purse is None:
            return None
        owner = purse.owner
        head = ledger.accounts[owner].head
        redeemed = ledger.redeemed_spends.get((purse_id, index))
        return PurseStatus(
            owner,
            head.sequence,
            ledger.claim_count.get(owner, 0),
            self.claimable(owner, head.sequence),
            purse.remaining,
            purse.refunded,
            redeemed,
        )

    def _vote(self, message: bytes, batch: VoteBatch | None) -> bytes:
        """The signature of a recorded vote, or ``b""`` once it is a leaf of ``batch``."""
        if batch is None:
            return self._sign(message)
        batch.leaves.append(message)
        return b""

    def sign_batch(self, batch: VoteBatch) -> bytes | None:
        """Sign the root of ``batch``'s vote tree once (``None`` for a batch without
        votes); the batch takes no more votes."""
        batch.signed = True
        if not batch.leaves:
            return None
        return self._sign(vote_tree_root(batch.leaves))

    def _revote(self, block: Block, data: bytes, batch: VoteBatch | None) -> Vote | Refusal:
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
        return Vote(self.index, self._vote(vote_message(self._committee_id, block.hash()), batch))

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
        if block.kind != BlockKind.REDEEM or other.kind != BlockKind.REDEEM:
            if block.kind == BlockKind.CLAIM and other.kind == BlockKind.CLAIM:
                return Refusal("another claim holds this claim index")
            return Refusal("another block holds this purse's lock")
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
    by_index: dict[int, CertificateVote] = {}
    for vote in votes:
        if vote.path:
            by_index[vote.validator] = (vote.validator, vote.signature, vote.sides, vote.path)
        else:
            by_index[vote.validator] = (vote.validator, vote.signature)
    if len(by_index) < committee.quorum:
        return None
    return Certificate(block, tuple(by_index[index] for index in sorted(by_index)))
