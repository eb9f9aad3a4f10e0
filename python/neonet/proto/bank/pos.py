"""A NeoBankof point of sale: accepts offline payments with no network, signs receipts.

Sans-I/O (``docs/bank.md``, "Offline purses"). The POS knows the committee (and so can
check a purse certificate offline) and its own account. It accepts a spend when the purse
certificate has a quorum, the purse is unexpired, the spend is signed by the purse key,
pays this POS, stays within the per-payment cap and the count, and its slot (purse,
index) is new here. Its total per purse then stays within the purse amount (cap * count
<= amount). A second, different spend for a known slot is a double spend: the POS keeps
the fraud proof. Every accepted spend and its receipt go through the injected store
before the receipt is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from neonet.core.errors import DecodeError
from neonet.core.ledger import BlockKind
from neonet.proto.bank.messages import (
    Committee,
    FraudProof,
    OfflinePayment,
    PursePayload,
    Receipt,
    Signer,
    check_certificate,
)

MAX_CACHED_PURSES = 10_000


class PosStore(Protocol):
    def spend_at(self, purse_id: bytes, index: int) -> tuple[OfflinePayment, Receipt] | None: ...
    def save(self, payment: OfflinePayment, receipt: Receipt) -> None: ...
    def save_proof(self, proof: FraudProof) -> None: ...


class MemoryPosStore:
    def __init__(self) -> None:
        self.accepted: dict[tuple[bytes, int], tuple[OfflinePayment, Receipt]] = {}
        self.proofs: list[FraudProof] = []

    def spend_at(self, purse_id: bytes, index: int) -> tuple[OfflinePayment, Receipt] | None:
        return self.accepted.get((purse_id, index))

    def save(self, payment: OfflinePayment, receipt: Receipt) -> None:
        self.accepted[(payment.spend.purse_id, payment.spend.index)] = (payment, receipt)

    def save_proof(self, proof: FraudProof) -> None:
        self.proofs.append(proof)


@dataclass(frozen=True, slots=True)
class PaymentRefused:
    reason: str
    proof: FraudProof | None = None


class PointOfSale:
    def __init__(self, committee: Committee, account: bytes, sign: Signer, store: PosStore) -> None:
        self.committee = committee
        self.account = account
        self._sign = sign
        self.store = store
        self._checked: set[bytes] = set()  # purse certificates already verified

    def accept(self, data: bytes, now: int) -> Receipt | PaymentRefused:
        """Check an encoded ``OfflinePayment`` offline at time ``now``."""
        try:
            payment = OfflinePayment.decode(data)
            purse_block = payment.purse.decoded()
            if purse_block.kind != BlockKind.OPEN_PURSE:
                return PaymentRefused("not a purse")
            terms = PursePayload.decode(purse_block.payload)
        except DecodeError as exc:
            return PaymentRefused(f"malformed payment: {exc}")
        spend = payment.spend
        purse_id = purse_block.hash()
        if spend.purse_id != purse_id:
            return PaymentRefused("the spend is not from this purse")
        if spend.payee != self.account:
            return PaymentRefused("the spend pays someone else")
        if not 0 < spend.amount <= terms.cap:
            return PaymentRefused("amount above the purse's per-payment cap")
        if spend.index >= terms.count or terms.cap * terms.count > purse_block.amount:
            return PaymentRefused("index beyond the purse's count")
        if now >= terms.expiry or spend.time >= terms.expiry:
            return PaymentRefused("the purse has expired")
        if not spend.verify(terms.purse_key):
            return PaymentRefused("bad spend signature")
        if purse_id not in self._checked:
            if not check_certificate(payment.purse, self.committee):
                return PaymentRefused("the purse certificate has no quorum")
            if len(self._checked) >= MAX_CACHED_PURSES:
                self._checked.clear()
            self._checked.add(purse_id)
        earlier = self.store.spend_at(purse_id, spend.index)
        if earlier is not None:
            if earlier[0].spend.digest() == spend.digest():
                return earlier[1]  # the same payment again: the same receipt
            proof = FraudProof.of_spends(earlier[0].spend, spend, payment.purse)
            self.store.save_proof(proof)
            return PaymentRefused("double spend of a purse slot", proof)
        receipt = Receipt(spend.digest(), self.account, now).signed(self._sign)
        self.store.save(payment, receipt)
        return receipt
