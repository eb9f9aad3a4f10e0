"""The NeoBankof ledger state machine: what certified blocks and fraud proofs add up to.

Sans-I/O (``docs/bank.md``, "Ledger state"). A ``BankLedger`` applies certificates (a
block with 2f+1 committee votes) in any order and any number of times: a certificate
whose predecessor, transfer or purse is not known yet waits in a bounded parking area
and is applied as soon as it can be, so every delivery order of the same set ends in the
same state. Each block is checked by the core verifier (``neonet.core.backend``: hash
chain, key, balance arithmetic, ZIP-215 signature) and then by the bank rules here:
payloads per kind, a RECEIVE credits one certified TRANSFER to its payee at most once,
a REDEEM credits one purse slot at most once, and purses never pay out more than they
hold. Fraud proofs freeze accounts (validators then refuse them) and record which
offline payees were double-spent. A CLAIM pays such a payee from the purse owner's
frozen balance (claims on one owner are numbered and applied in order, each spend at
most once, never more than the owner's balance); a REFUND returns an expired purse's
remainder to its owner, after which the purse redeems nothing.

Money is conserved: ``issued == sum(balances) - claims_paid + in_flight +
purse_reserves`` after every step (``conservation()``): a claim credits the payee's chain
and is owed by the frozen owner, whose chain (signed by the owner alone) cannot carry it.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from neonet.core import backend
from neonet.core.errors import DecodeError
from neonet.core.ledger import Block, BlockKind, ChainHead
from neonet.proto.bank.messages import (
    Certificate,
    ClaimPayload,
    Committee,
    FraudProof,
    PursePayload,
    ReceivePayload,
    RedeemPayload,
    RefundPayload,
    Spend,
    TransferPayload,
    block_hash,
    check_certificate,
    check_fraud_proof,
)

MAX_PARKED = 4096
MAX_PURSE_COUNT = 10_000
#: Certificates of each account kept in memory (the head and those just before it) when
#: the ledger has an archive; older ones are read from the archive.
DEFAULT_TAIL = 8
#: Hashes of recently applied blocks remembered for ``has_applied`` when the ledger has
#: an archive (a hint: an older block answers ``False`` and is then found a duplicate).
RECENT_APPLIED = 65_536


class Applied(Enum):
    """What ``BankLedger.apply`` did with a certificate."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # already applied
    PARKED = "parked"  # waits for a predecessor, transfer or purse
    REJECTED = "rejected"  # not a valid certificate, or breaks a rule
    CONFLICT = "conflict"  # a second certificate for an applied slot (> f faulty)


@dataclass(slots=True)
class Incoming:
    """A certified transfer not yet received by its payee."""

    payee: bytes
    amount: int
    transfer_hash: bytes


@dataclass(slots=True)
class PurseState:
    owner: bytes
    terms: PursePayload
    amount: int
    remaining: int
    certificate: Certificate
    refunded: bool = False


@dataclass(slots=True)
class AccountState:
    """An account's certified head and the certificates of its chain kept in memory:
    ``certificates[i]`` is the one at sequence ``first + i``, the last one the head's
    (all of them, ``first == 0``, when the ledger has no archive)."""

    head: ChainHead
    certificates: list[Certificate] = field(default_factory=list)
    first: int = 0

    @property
    def blocks(self) -> list[bytes]:
        return [certificate.block for certificate in self.certificates]


class CertificateArchive(Protocol):
    """Durable storage of applied certificates, for a ledger that keeps only a tail of
    each chain in memory (``BankLedger(archive=...)``).

    ``archive`` is called once per applied certificate, in the order they are applied
    (a restart replays them in that order); from then on ``archived`` must return it,
    whether or not it is on disk yet."""

    def archive(self, account: bytes, sequence: int, certificate: Certificate) -> None: ...

    def archived(self, account: bytes, start: int, count: int) -> list[Certificate]:
        """The archived certificates of ``account`` from ``start`` on, at most ``count``,
        in sequence order."""
        ...


class MemoryCertificateArchive:
    """A ``CertificateArchive`` in memory (tests; a ledger that wants the archive's
    interface without a database). Keeps what it is given, in order."""

    def __init__(self) -> None:
        self.order: list[Certificate] = []
        self._chains: dict[bytes, dict[int, Certificate]] = {}

    def archive(self, account: bytes, sequence: int, certificate: Certificate) -> None:
        chain = self._chains.setdefault(account, {})
        if sequence not in chain:
            chain[sequence] = certificate
            self.order.append(certificate)

    def archived(self, account: bytes, start: int, count: int) -> list[Certificate]:
        chain = self._chains.get(account, {})
        result = []
        for sequence in range(start, start + count):
            if sequence not in chain:
                break
            result.append(chain[sequence])
        return result


class BankRuleError(Exception):
    """A block breaks a bank rule (``missing`` when it only waits for something unknown)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


class BankLedger:
    """Balances, transfers in flight, purses and frozen accounts, from certificates."""

    def __init__(
        self,
        committee: Committee,
        mint_account: bytes,
        *,
        archive: CertificateArchive | None = None,
        tail: int = DEFAULT_TAIL,
    ) -> None:
        """``archive``: where applied certificates go; memory then keeps ``tail`` of each
        account's chain (at least 1, the head's) and reads older ones from the archive.
        Without one, every applied certificate stays in memory (tests, short-lived
        ledgers)."""
        if tail < 1:
            raise ValueError("a ledger keeps at least the head's certificate")
        self.committee = committee
        self.mint_account = mint_account
        self.archive = archive
        self.tail = tail
        self.accounts: dict[bytes, AccountState] = {}
        self.incoming: dict[tuple[bytes, int], Incoming] = {}
        # payee -> its incoming slots, in order (``pending_credits`` reads one payee's
        # without walking every transfer in flight).
        self._incoming_to: dict[bytes, dict[tuple[bytes, int], None]] = {}
        self.received: set[tuple[bytes, int]] = set()
        self.purses: dict[bytes, PurseState] = {}
        self.redeemed: dict[tuple[bytes, int], bytes] = {}  # slot -> spend digest
        self.redeemed_spends: dict[tuple[bytes, int], Spend] = {}
        self.frozen: dict[bytes, FraudProof] = {}
        self.double_spent: dict[tuple[bytes, int], dict[bytes, Spend]] = {}
        self.claims_paid: dict[bytes, int] = {}  # frozen owner -> total paid to claimants
        self.claim_count: dict[bytes, int] = {}  # frozen owner -> claims applied (next index)
        self.claimed: dict[bytes, tuple[bytes, int]] = {}  # spend digest -> (payee, amount)
        self.issued = 0
        self.conflicts: list[tuple[bytes, bytes]] = []
        self._parked: dict[bytes, Certificate] = {}  # quorum checked before parking
        # Hashes of applied blocks: all of them without an archive, else the most recent
        # ``RECENT_APPLIED`` (``_applied_order``: oldest first). Not a dict popped from the
        # front: its iteration then skips every deleted slot (6 us per block, measured).
        self._applied: set[bytes] = set()
        self._applied_order: deque[bytes] = deque()
        # Called with (account, new head sequence) after each applied certificate, also one
        # applied from the parked queue or as a fraud proof's evidence (a validator settles
        # its votes there).
        self.on_advanced: Callable[[bytes, int], None] | None = None

    # Queries ----------------------------------------------------------------------------

    def head(self, account: bytes) -> ChainHead | None:
        state = self.accounts.get(account)
        return None if state is None else state.head

    def balance(self, account: bytes) -> int:
        head = self.head(account)
        return 0 if head is None else head.balance

    def available(self, account: bytes) -> int:
        """The balance minus what claimants were paid from it (a frozen owner's funds)."""
        return self.balance(account) - self.claims_paid.get(account, 0)

    def pending_credits(
        self, account: bytes, limit: int | None = None
    ) -> list[tuple[tuple[bytes, int], Incoming]]:
        """Certified transfers to ``account`` not yet received, oldest first (at most
        ``limit``)."""
        slots = self._incoming_to.get(account, {})
        chosen = slots if limit is None else itertools.islice(slots, limit)
        return [(slot, self.incoming[slot]) for slot in chosen]

    def conservation(self) -> tuple[int, int]:
        """(money issued, money held): equal at every step."""
        held = sum(state.head.balance for state in self.accounts.values())
        held -= sum(self.claims_paid.values())
        held += sum(item.amount for item in self.incoming.values())
        held += sum(purse.remaining for purse in self.purses.values())
        return self.issued, held

    def has_applied(self, block: bytes) -> bool:
        """Whether the encoded (canonical) ``block`` is known to be applied already. With
        an archive, only recent blocks are remembered: an older one answers ``False``
        (``apply`` then finds it a duplicate)."""
        return len(block) > 67 and block_hash(block) in self._applied

    def parked_count(self) -> int:
        return len(self._parked)

    def claims(self, account: bytes) -> list[tuple[bytes, int]]:
        """Offline payees of a frozen account who lost a double-spent slot: (payee, amount).

        For each double-spent slot of the account's purses, the spend that was not
        redeemed (both, while none is) is a claim on the frozen balance, until a CLAIM
        block paid it.
        """
        result = []
        for slot, spends in sorted(self.double_spent.items()):
            purse = self.purses.get(slot[0])
            if purse is None or purse.owner != account:
                continue
            winner = self.redeemed.get(slot)
            for digest, spend in sorted(spends.items()):
                if digest != winner and digest not in self.claimed:
                    result.append((spend.payee, spend.amount))
        return result

    def snapshot(self) -> tuple[object, ...]:
        """A value equal for equal states (for order-independence checks)."""
        return (
            sorted(
                (a, s.head.sequence, s.head.hash, s.head.balance) for a, s in self.accounts.items()
            ),
            sorted((k, v.amount) for k, v in self.incoming.items()),
            sorted(self.received),
            sorted((k, v.remaining) for k, v in self.purses.items()),
            sorted(self.redeemed.items()),
            sorted(self.frozen),
            self.issued,
            sorted(self.claimed.items()),
            sorted(self.claims_paid.items()),
            sorted(k for k, v in self.purses.items() if v.refunded),
        )

    # Rules --------------------------------------------------------------------------------

    def check_block_rules(self, block: Block) -> None:
        """Raise ``BankRuleError`` if ``block`` breaks a bank rule against this state.

        The core chain checks (sequence, link, key, arithmetic, signature) are separate.
        """
        try:
            self._check_rules(block)
        except DecodeError as exc:
            raise BankRuleError(f"bad {BlockKind(block.kind).name} payload: {exc}") from None

    def _check_rules(self, block: Block) -> None:
        kind = block.kind
        if kind == BlockKind.TRANSFER:
            TransferPayload.decode(block.payload)
            if block.amount == 0:
                raise BankRuleError("a transfer moves a positive amount")
        elif kind == BlockKind.RECEIVE:
            ref = ReceivePayload.decode(block.payload)
            slot = (ref.payer, ref.sequence)
            if slot in self.received:
                raise BankRuleError("this transfer was already received")
            item = self.incoming.get(slot)
            if item is None:
                payer = self.head(ref.payer)
                unknown = payer is None or payer.sequence < ref.sequence
                raise BankRuleError("no such certified transfer", missing=unknown)
            if item.payee != block.account:
                raise BankRuleError("the transfer is to another account")
            if item.amount != block.amount or item.transfer_hash != ref.transfer_hash:
                raise BankRuleError("RECEIVE does not match the transfer")
        elif kind == BlockKind.OPEN_PURSE:
            terms = PursePayload.decode(block.payload)
            if not 0 < terms.count <= MAX_PURSE_COUNT or terms.cap == 0:
                raise BankRuleError("a purse has 1..10000 payments of a positive cap")
            if terms.cap * terms.count > block.amount:
                raise BankRuleError("cap * count exceeds the purse amount")
        elif kind == BlockKind.REDEEM:
            spend = RedeemPayload.decode(block.payload).spend
            self.check_spend(spend, payee=block.account)
            if spend.amount != block.amount:
                raise BankRuleError("REDEEM amount is not the spend's amount")
        elif kind == BlockKind.CLAIM:
            self.check_claim(block, ClaimPayload.decode(block.payload))
        elif kind == BlockKind.REFUND:
            self.check_refund(block, RefundPayload.decode(block.payload))
        elif kind == BlockKind.ISSUE:
            if block.amount == 0:
                raise BankRuleError("an issue creates a positive amount")
        elif block.payload and kind == BlockKind.OPEN:
            raise BankRuleError("OPEN has an empty payload")

    def check_spend(self, spend: Spend, *, payee: bytes) -> PurseState:
        """Raise ``BankRuleError`` unless ``spend`` may be redeemed by ``payee`` now."""
        purse = self.purses.get(spend.purse_id)
        if purse is None:
            raise BankRuleError("unknown purse", missing=True)
        terms = purse.terms
        if spend.payee != payee:
            raise BankRuleError("the spend pays another account")
        if not 0 < spend.amount <= terms.cap or spend.index >= terms.count:
            raise BankRuleError("the spend breaks the purse's cap or count")
        if spend.time >= terms.expiry:
            raise BankRuleError("the spend is dated after the purse expired")
        if purse.refunded:
            raise BankRuleError("the purse was refunded to its owner")
        if (spend.purse_id, spend.index) in self.redeemed:
            raise BankRuleError("this purse slot was already redeemed")
        if spend.digest() in self.claimed:
            raise BankRuleError("this spend was paid by a claim")
        if spend.amount > purse.remaining:
            raise BankRuleError("the purse does not hold this much")
        if not spend.verify(terms.purse_key):
            raise BankRuleError("the spend's signature does not verify")
        return purse

    def check_claim(self, block: Block, claim: ClaimPayload) -> tuple[PurseState, Spend]:
        """Raise ``BankRuleError`` unless ``block`` is a valid claim against this state;
        returns the purse and the redeemed spend that beat the claimed one.

        The claimed spend must be acceptable (signed by the purse key, within cap, count
        and expiry, to the claimant), its slot redeemed by another spend (so the two make
        a spend fraud proof against the owner), not paid before, numbered next among the
        owner's claims, judged at a certified owner sequence this ledger knows, and paid
        no more than the spend's amount and the owner's available balance.
        """
        spend = claim.spend
        purse = self.purses.get(spend.purse_id)
        if purse is None:
            raise BankRuleError("unknown purse", missing=True)
        terms = purse.terms
        if spend.payee != block.account:
            raise BankRuleError("the spend pays another account")
        if not 0 < spend.amount <= terms.cap or spend.index >= terms.count:
            raise BankRuleError("the spend breaks the purse's cap or count")
        if spend.time >= terms.expiry:
            raise BankRuleError("the spend is dated after the purse expired")
        if not 0 < block.amount <= spend.amount:
            raise BankRuleError("a claim pays 1..the spend's amount")
        digest = spend.digest()
        if digest in self.claimed:
            raise BankRuleError("this spend was already paid by a claim")
        winner = self.redeemed_spends.get((spend.purse_id, spend.index))
        if winner is None:
            raise BankRuleError("the slot was not redeemed by another spend", missing=True)
        if winner.digest() == digest:
            raise BankRuleError("this spend was redeemed")
        if not spend.verify(terms.purse_key):
            raise BankRuleError("the spend's signature does not verify")
        owner = purse.owner
        expected = self.claim_count.get(owner, 0)
        if claim.claim_index != expected:
            raise BankRuleError(
                f"claim index {claim.claim_index}, the owner's next is {expected}",
                missing=claim.claim_index > expected,
            )
        head = self.head(owner)
        if head is None or head.sequence < claim.frozen_sequence:
            raise BankRuleError("the owner's chain is behind the claim", missing=True)
        if block.amount > self.available(owner):
            raise BankRuleError("the claim exceeds the owner's available balance")
        return purse, winner

    def check_refund(self, block: Block, refund: RefundPayload) -> PurseState:
        """Raise ``BankRuleError`` unless ``block`` refunds a purse's whole remainder to
        its owner. (Validators also check the time: expiry plus the grace period.)"""
        purse = self.purses.get(refund.purse_id)
        if purse is None:
            raise BankRuleError("unknown purse", missing=True)
        if purse.owner != block.account:
            raise BankRuleError("the purse belongs to another account")
        if purse.refunded:
            raise BankRuleError("the purse was already refunded")
        if block.amount == 0 or block.amount > purse.remaining:
            raise BankRuleError("a refund returns the purse's positive remainder")
        if block.amount < purse.remaining:
            # Redeems certified before the refund and not applied here yet.
            raise BankRuleError("the refund is not the purse's remainder", missing=True)
        return purse

    # Applying -------------------------------------------------------------------------------

    def apply(
        self,
        certificate: Certificate,
        verified: ChainHead | None = None,
        *,
        quorum_checked: bool = False,
    ) -> Applied:
        """Apply a certificate (any order, duplicates allowed); then whatever it unblocks.

        ``verified`` is the head after the block when the caller already ran the core
        chain check of these exact bytes from the current head (a validator that voted
        for the block); it is used only if the block continues the current head.
        ``quorum_checked``: the caller verified the certificate's 2f+1 votes.
        """
        outcome = self._apply_one(certificate, verified=verified, quorum_checked=quorum_checked)
        if outcome is Applied.APPLIED:
            self._drain_parked()
        return outcome

    def _drain_parked(self) -> None:
        progress = True
        while progress and self._parked:
            progress = False
            for key, parked in list(self._parked.items()):
                outcome = self._apply_one(parked, parking=False, quorum_checked=True)
                if outcome is not Applied.PARKED:
                    del self._parked[key]
                    progress = progress or outcome is Applied.APPLIED

    def _apply_one(
        self,
        certificate: Certificate,
        *,
        parking: bool = True,
        verified: ChainHead | None = None,
        quorum_checked: bool = False,
    ) -> Applied:
        try:
            block = certificate.decoded()
        except DecodeError:
            return Applied.REJECTED
        this_hash = block_hash(certificate.block)
        state = self.accounts.get(block.account)
        last = -1 if state is None else state.head.sequence
        if block.sequence <= last:
            assert state is not None
            if this_hash in self._applied:
                return Applied.DUPLICATE
            found = self.certificate_at(block.account, block.sequence)
            assert found is not None  # every slot up to the head is applied
            applied = found.block
            if block_hash(applied) == this_hash:
                return Applied.DUPLICATE
            if check_certificate(certificate, self.committee):
                self.conflicts.append((applied, certificate.block))
                return Applied.CONFLICT
            return Applied.REJECTED
        if not quorum_checked and not check_certificate(certificate, self.committee):
            return Applied.REJECTED
        if block.sequence > last + 1:
            return self._park(this_hash, certificate, parking)
        head = None if state is None else state.head
        if (
            verified is not None
            and verified.sequence == block.sequence
            and verified.hash == this_hash
            and (head.hash if head is not None else bytes(32)) == block.previous
        ):
            new_head = verified
        else:
            verdict = backend.verify_chain(
                [certificate.block], mint_account=self.mint_account, start=head
            )
            if not verdict.ok or verdict.head is None:
                return Applied.REJECTED
            new_head = verdict.head
        try:
            self.check_block_rules(block)
        except BankRuleError as exc:
            if exc.missing:
                return self._park(this_hash, certificate, parking)
            return Applied.REJECTED
        self._commit(block, new_head, certificate)  # new_head.hash is this block's hash
        if self.on_advanced is not None:
            self.on_advanced(block.account, new_head.sequence)
        return Applied.APPLIED

    def _park(self, block_hash: bytes, certificate: Certificate, parking: bool) -> Applied:
        if parking:
            if len(self._parked) >= MAX_PARKED and block_hash not in self._parked:
                return Applied.REJECTED  # bounded: the sender retries later
            self._parked[block_hash] = certificate
        return Applied.PARKED

    def _commit(self, block: Block, head: ChainHead, certificate: Certificate) -> None:
        # Kept without its decoded block (about 0.5 KiB that every applied block would
        # hold for good); the rare reader decodes ``certificate.block`` again.
        kept = Certificate(certificate.block, certificate.votes)
        if self.archive is not None:
            # First: an archive that raises (a disk error) leaves the state untouched.
            self.archive.archive(block.account, block.sequence, kept)
        state = self.accounts.get(block.account)
        if state is None:
            state = self.accounts[block.account] = AccountState(head)
        state.head = head
        state.certificates.append(kept)
        self._applied.add(head.hash)
        if self.archive is not None:
            if len(state.certificates) > 2 * self.tail:  # trimmed in steps, not per block
                drop = len(state.certificates) - self.tail
                del state.certificates[:drop]
                state.first += drop
            order = self._applied_order
            order.append(head.hash)
            if len(order) > RECENT_APPLIED:
                self._applied.discard(order.popleft())
        kind = block.kind
        if kind == BlockKind.ISSUE:
            self.issued += block.amount
        elif kind == BlockKind.TRANSFER:
            payee = TransferPayload.decode(block.payload).payee
            slot = (block.account, block.sequence)
            self.incoming[slot] = Incoming(payee, block.amount, head.hash)
            self._incoming_to.setdefault(payee, {})[slot] = None
        elif kind == BlockKind.RECEIVE:
            ref = ReceivePayload.decode(block.payload)
            slot = (ref.payer, ref.sequence)
            payee = self.incoming.pop(slot).payee
            payee_slots = self._incoming_to[payee]
            del payee_slots[slot]
            if not payee_slots:
                del self._incoming_to[payee]
            self.received.add(slot)
        elif kind == BlockKind.OPEN_PURSE:
            terms = PursePayload.decode(block.payload)
            self.purses[head.hash] = PurseState(
                block.account, terms, block.amount, block.amount, certificate
            )
        elif kind == BlockKind.REDEEM:
            spend = RedeemPayload.decode(block.payload).spend
            self.purses[spend.purse_id].remaining -= spend.amount
            self.redeemed[(spend.purse_id, spend.index)] = spend.digest()
            self.redeemed_spends[(spend.purse_id, spend.index)] = spend
        elif kind == BlockKind.CLAIM:
            claim = ClaimPayload.decode(block.payload)
            purse, winner = self.check_claim(block, claim)
            owner = purse.owner
            self.claims_paid[owner] = self.claims_paid.get(owner, 0) + block.amount
            self.claim_count[owner] = claim.claim_index + 1
            self.claimed[claim.spend.digest()] = (block.account, block.amount)
            self._record_spend_fraud(
                FraudProof.of_spends(claim.spend, winner, purse.certificate), owner
            )
        elif kind == BlockKind.REFUND:
            purse = self.purses[RefundPayload.decode(block.payload).purse_id]
            purse.remaining -= block.amount
            purse.refunded = True

    def certificate_at(self, account: bytes, sequence: int) -> Certificate | None:
        """The certificate of the account's block at ``sequence``, if applied
        (``LookupError`` if the archive lost it: a damaged store)."""
        state = self.accounts.get(account)
        if state is None or not 0 <= sequence <= state.head.sequence:
            return None
        if sequence >= state.first:
            return state.certificates[sequence - state.first]
        found = self.chain(account, sequence, 1)
        return found[0] if found else None

    def chain(self, account: bytes, start: int, count: int) -> list[Certificate]:
        """The applied certificates of ``account`` from sequence ``start`` on, at most
        ``count`` of them (memory, then the archive for older ones)."""
        state = self.accounts.get(account)
        if state is None or count <= 0:
            return []
        start = max(start, 0)
        first = state.first
        if start >= first:
            return state.certificates[start - first :][:count]
        assert self.archive is not None  # ``first`` moves only with an archive
        older = self.archive.archived(account, start, min(count, first - start))
        if len(older) != min(count, first - start):
            raise LookupError(f"the certificate archive lacks blocks of {account.hex()}")
        return [*older, *state.certificates[: count - len(older)]]

    def apply_fraud_proof(self, proof: FraudProof) -> bytes | None:
        """Freeze the convicted account if ``proof`` holds; returns it (``None`` if not)."""
        account = check_fraud_proof(proof, self.committee)
        if account is None:
            return None
        self._record_spend_fraud(proof, account)
        if proof.kind == 1 and proof.evidence is not None:
            self.apply(proof.evidence)
        return account

    def _record_spend_fraud(self, proof: FraudProof, account: bytes) -> None:
        """Freeze ``account`` on a checked ``proof``; for spends, remember the slot's spends."""
        self.frozen.setdefault(account, proof)
        if proof.kind == 1:
            first, second = Spend.decode(proof.first), Spend.decode(proof.second)
            spends = self.double_spent.setdefault((first.purse_id, first.index), {})
            spends[first.digest()] = first
            spends[second.digest()] = second
