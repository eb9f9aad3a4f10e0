"""NeoBankof engines end to end in memory: transfers, issue, keys, purses, fraud proofs."""

from __future__ import annotations

import pytest

from neonet.core.errors import LocalProtocolError
from neonet.proto.bank.messages import (
    Certificate,
    FraudProof,
    PursePayload,
    Receipt,
    check_certificate,
    check_fraud_proof,
)
from neonet.proto.bank.pos import MemoryPosStore, PaymentRefused, PointOfSale
from neonet.proto.bank.state import Applied
from neonet.proto.bank.validator import Refusal, Vote
from neonet.proto.bank.wallet import MemoryWalletStore, PurseWallet, Wallet
from tests.proto.bank.world import World, identity, key_of


def conserved(world: World) -> None:
    issued, held = world.observer.conservation()
    assert issued == held
    for validator in world.validators:
        assert validator.ledger.conservation() == (issued, held)


def test_transfer_is_credited_once_through_receive() -> None:
    world = World()
    alice = world.funded("alice", 1000)
    bob = world.wallet("bob")
    world.commit(bob, bob.open())
    transfer = world.commit(alice, alice.transfer(bob.account, 300, b"rent")).decoded()
    assert world.observer.balance(alice.account) == 700
    # Certified: the payee holds a credit in flight until its RECEIVE block.
    assert [item.amount for _, item in world.observer.pending_credits(bob.account)] == [300]
    conserved(world)
    world.commit(bob, bob.receive(alice.account, transfer.sequence, transfer.hash(), 300))
    assert world.observer.balance(bob.account) == 300
    assert world.observer.pending_credits(bob.account) == []
    conserved(world)
    # A second RECEIVE of the same transfer is refused by every validator.
    again = bob.receive(alice.account, transfer.sequence, transfer.hash(), 300)
    answers = world.ask(again)
    assert all(isinstance(a, Refusal) and "already received" in a.reason for a in answers)
    assert world.certify(again) is None


def test_receive_must_match_the_transfer() -> None:
    world = World()
    alice = world.funded("alice", 100)
    bob, carol = world.wallet("bob"), world.wallet("carol")
    world.commit(bob, bob.open())
    world.commit(carol, carol.open())
    transfer = world.commit(alice, alice.transfer(bob.account, 60)).decoded()
    # Carol cannot take Bob's transfer, nor Bob receive more than was sent.
    stolen = carol.receive(alice.account, transfer.sequence, transfer.hash(), 60)
    assert all(isinstance(a, Refusal) for a in world.ask(stolen))
    bigger = bob.receive(alice.account, transfer.sequence, transfer.hash(), 61)
    assert all(isinstance(a, Refusal) for a in world.ask(bigger))


def test_only_the_mint_issues_money() -> None:
    world = World()
    mallory = world.wallet("mallory")
    world.commit(mallory, mallory.open())
    answers = world.ask(mallory.issue(10**6))
    assert all(isinstance(a, Refusal) and "ISSUE" in a.reason for a in answers)


def test_overspend_is_refused() -> None:
    world = World()
    alice = world.funded("alice", 50)
    with pytest.raises(LocalProtocolError):
        alice.transfer(alice.account, 51)


def test_a_certificate_needs_two_f_plus_one_distinct_validators() -> None:
    world = World()
    world.commit(world.mint, world.mint.open())
    block = world.mint.issue(5)
    assert world.certify(block, [0, 1]) is None
    certificate = world.certify(block, [0, 1, 2])
    assert certificate is not None and check_certificate(certificate, world.committee)
    # A forged vote, or one moved to another committee, does not count.
    index, _signature = certificate.votes[2]
    forged = Certificate(block, (*certificate.votes[:2], (index, bytes(64))))
    assert not check_certificate(forged, world.committee)
    other = World(tag="other")
    assert not check_certificate(certificate, other.committee)
    assert Certificate.decode(certificate.encode()) == certificate


def test_committee_is_signed_by_the_root_key() -> None:
    world = World()
    assert world.committee.verify(key_of(world.root))
    assert not world.committee.verify(key_of(world.mint_id))
    assert world.committee.quorum == 3


def test_online_equivocation_forms_no_certificate_and_yields_a_proof() -> None:
    world = World()
    alice = world.funded("alice", 100)
    bob, carol = world.wallet("bob"), world.wallet("carol")
    to_bob = alice.transfer(bob.account, 100)
    # A second wallet on the same key and chain: the double spender's second device.
    twin = Wallet(alice.account, alice.key, identity("wallet-alice").sign, MemoryWalletStore())
    twin.synced(list(alice.history))
    to_carol = twin.transfer(carol.account, 100)
    assert to_bob != to_carol
    first = world.ask(to_bob, [0, 1])
    second = world.ask(to_carol, [2, 3])
    assert all(isinstance(a, Vote) for a in first + second)
    # Two votes each: no certificate for either block.
    assert world.certify(to_bob, [0, 1]) is None and world.certify(to_carol, [2, 3]) is None
    # Asking a validator that voted for the other block reveals the double spend.
    answer = world.validators[0].handle_sign_request(to_carol)
    assert isinstance(answer, Refusal) and answer.proof is not None
    proof = FraudProof.decode(answer.proof.encode())
    assert check_fraud_proof(proof, world.committee) == alice.account
    for validator in world.validators:
        assert validator.handle_fraud_proof(proof) == alice.account
    # Frozen: no validator signs for the account any more.
    assert all(isinstance(a, Refusal) and "frozen" in a.reason for a in world.ask(to_bob))


def test_a_fraud_proof_of_unrelated_blocks_does_not_hold() -> None:
    world = World()
    alice = world.funded("alice", 100)
    bob = world.funded("bob", 100)
    a = alice.transfer(bob.account, 1)
    b = bob.transfer(alice.account, 1)
    assert check_fraud_proof(FraudProof.of_blocks(a, b, None), world.committee) is None
    previous = world.observer.certificate_at(alice.account, alice.head.sequence)  # type: ignore[union-attr]
    assert check_fraud_proof(FraudProof.of_blocks(a, b, previous), world.committee) is None


def test_key_rotation_through_a_certified_block() -> None:
    world = World()
    alice = world.funded("alice", 100)
    new = identity("alice-new-key")
    world.commit(alice, alice.rotate_key(key_of(new)))
    # The old key no longer signs for the account.
    stale = Wallet(alice.account, alice.account, identity("wallet-alice").sign, MemoryWalletStore())
    stale.synced(list(alice.history))
    with pytest.raises(LocalProtocolError):
        stale.transfer(alice.account, 1)
    alice.use_key(key_of(new), new.sign)
    world.commit(alice, alice.transfer(world.mint.account, 40))
    assert world.observer.balance(alice.account) == 60
    conserved(world)


def open_purse(world: World, wallet: Wallet, amount: int, cap: int, count: int) -> PurseWallet:
    purse_key = identity(f"purse-{wallet.account.hex()[:8]}-{len(wallet.history)}")
    terms = PursePayload(key_of(purse_key), cap, count, expiry=10_000)
    certificate = world.commit(wallet, wallet.open_purse(amount, terms))
    return PurseWallet(certificate, purse_key.sign)


def pos(world: World, label: str) -> tuple[PointOfSale, Wallet]:
    ident = identity(f"wallet-{label}")
    wallet = world.wallet(label)
    world.commit(wallet, wallet.open())
    return PointOfSale(world.committee, wallet.account, ident.sign, MemoryPosStore()), wallet


def test_offline_purse_pays_a_pos_that_redeems_online() -> None:
    world = World()
    alice = world.funded("alice", 1000)
    purse = open_purse(world, alice, 300, cap=100, count=3)
    assert world.observer.balance(alice.account) == 700
    shop, shop_wallet = pos(world, "shop")
    payment = purse.pay(shop_wallet.account, 80, now=100)
    receipt = shop.accept(payment.encode(), now=101)
    assert isinstance(receipt, Receipt) and receipt.verify()
    assert Receipt.decode(receipt.encode()) == receipt
    # The same token again: the same receipt, not a second payment.
    assert shop.accept(payment.encode(), now=102) == receipt
    world.commit(shop_wallet, shop_wallet.redeem(payment.spend))
    assert world.observer.balance(shop_wallet.account) == 80
    assert world.observer.purses[purse.purse_id].remaining == 220
    conserved(world)
    # Redeeming the same spend again is refused (credited at most once).
    answers = world.ask(shop_wallet.redeem(payment.spend))
    assert all(isinstance(a, Refusal) for a in answers)


def test_offline_limits_are_enforced_by_wallet_and_pos() -> None:
    world = World()
    alice = world.funded("alice", 1000)
    purse = open_purse(world, alice, 200, cap=100, count=2)
    shop, shop_wallet = pos(world, "shop")
    with pytest.raises(LocalProtocolError):
        purse.pay(shop_wallet.account, 101, now=1)
    with pytest.raises(LocalProtocolError):
        purse.pay(shop_wallet.account, 1, now=10_000)
    # A spend forged past the cap / count is refused by the POS too.
    from neonet.proto.bank.messages import OfflinePayment, Spend

    over_cap = Spend(purse.purse_id, 0, 101, shop_wallet.account, 1).signed(purse._sign)
    refused = shop.accept(OfflinePayment(purse.certificate, over_cap).encode(), now=2)
    assert isinstance(refused, PaymentRefused) and "cap" in refused.reason
    over_count = Spend(purse.purse_id, 2, 1, shop_wallet.account, 1).signed(purse._sign)
    refused = shop.accept(OfflinePayment(purse.certificate, over_count).encode(), now=2)
    assert isinstance(refused, PaymentRefused) and "count" in refused.reason
    late = purse.pay(shop_wallet.account, 5, now=9_999)
    assert isinstance(shop.accept(late.encode(), now=10_000), PaymentRefused)
    purse.pay(shop_wallet.account, 5, now=1)
    with pytest.raises(LocalProtocolError):
        purse.pay(shop_wallet.account, 5, now=1)


def test_purse_double_spent_at_two_offline_pos() -> None:
    world = World()
    alice = world.funded("alice", 1000)
    purse = open_purse(world, alice, 300, cap=100, count=3)
    shop_a, wallet_a = pos(world, "shop-a")
    shop_b, wallet_b = pos(world, "shop-b")
    # The double spender replays index 0 from a copy of the purse to the second shop.
    pay_a = purse.pay(wallet_a.account, 100, now=5)
    copy = PurseWallet(purse.certificate, purse._sign, next_index=0)
    pay_b = copy.pay(wallet_b.account, 90, now=6)
    # Both shops are offline and accept within the limits.
    assert isinstance(shop_a.accept(pay_a.encode(), now=7), Receipt)
    assert isinstance(shop_b.accept(pay_b.encode(), now=7), Receipt)
    # At resync shop A redeems first; shop B's redeem of the same slot is refused with a proof.
    world.commit(wallet_a, wallet_a.redeem(pay_a.spend))
    answers = world.ask(wallet_b.redeem(pay_b.spend))
    assert all(isinstance(a, Refusal) for a in answers)
    proofs = [a.proof for a in answers if isinstance(a, Refusal) and a.proof is not None]
    assert proofs
    assert check_fraud_proof(proofs[0], world.committee) == alice.account
    assert world.observer.apply_fraud_proof(proofs[0]) == alice.account
    # Frozen; shop B keeps a claim for the lost payment; the loss is bounded by the purse.
    assert alice.account in world.observer.frozen
    assert world.observer.claims(alice.account) == [(wallet_b.account, 90)]
    redeemed_total = 300 - world.observer.purses[purse.purse_id].remaining
    assert redeemed_total <= 300
    conserved(world)


def test_restored_wallet_syncs_before_signing() -> None:
    world = World()
    alice = world.funded("alice", 10)
    restored = Wallet(
        alice.account, alice.key, identity("wallet-alice").sign, MemoryWalletStore(), restored=True
    )
    with pytest.raises(LocalProtocolError, match="sync"):
        restored.transfer(alice.account, 1)
    restored.synced(list(alice.history))
    assert restored.balance == 10
    block = restored.transfer(world.mint.account, 1)
    assert world.certify(block) is not None


def test_ledger_parks_out_of_order_certificates() -> None:
    world = World()
    alice = world.funded("alice", 10)
    certificates = list(world.mint.history) + list(alice.history)
    late = World()
    results = [late.observer.apply(c) for c in reversed(certificates)]
    assert Applied.PARKED in results
    assert late.observer.snapshot() == world.observer.snapshot()
    assert late.observer.parked_count() == 0
    assert [late.observer.apply(c) for c in certificates] == [Applied.DUPLICATE] * len(certificates)


def _double_spent(world: World, alice: Wallet, cap: int = 100) -> tuple[PurseWallet, ...]:
    """A purse of 300 whose slot 0 alice spends at two offline shops (100 and 90)."""
    purse = open_purse(world, alice, 300, cap=cap, count=3)
    shop_a, wallet_a = pos(world, "shop-a")
    shop_b, wallet_b = pos(world, "shop-b")
    pay_a = purse.pay(wallet_a.account, 100, now=5)
    pay_b = PurseWallet(purse.certificate, purse._sign, next_index=0).pay(
        wallet_b.account, 90, now=6
    )
    assert isinstance(shop_a.accept(pay_a.encode(), now=7), Receipt)
    assert isinstance(shop_b.accept(pay_b.encode(), now=7), Receipt)
    return purse, wallet_a, wallet_b, pay_a, pay_b  # type: ignore[return-value]


def test_losing_pos_claims_the_frozen_funds_and_is_paid_once() -> None:
    from neonet.proto.bank.validator import claim_lock

    world = World()
    alice = world.funded("alice", 1000)
    purse, wallet_a, wallet_b, pay_a, pay_b = _double_spent(world, alice)
    # Resync: shop A redeems first; shop B's REDEEM loses the slot and brings the proof.
    world.commit(wallet_a, wallet_a.redeem(pay_a.spend))
    answers = world.ask(wallet_b.redeem(pay_b.spend))
    proof = next(a.proof for a in answers if isinstance(a, Refusal) and a.proof is not None)
    assert world.observer.apply_fraud_proof(proof) == alice.account
    assert world.observer.claims(alice.account) == [(wallet_b.account, 90)]
    # Shop B asks a validator where things stand and replaces its lost REDEEM by a claim.
    status = world.validators[0].purse_status(purse.purse_id, 0)
    assert status is not None and status.owner == alice.account
    assert status.redeemed == pay_a.spend and status.next_claim_index == 0
    assert status.claimable == 700  # alice's balance after opening the purse
    lost_sequence = wallet_b.head.sequence + 1 if wallet_b.head else 0
    claim = wallet_b.claim_lost_redeem(0, status.owner_sequence, min(90, status.claimable))
    certificate = world.commit(wallet_b, claim)
    assert certificate.decoded().sequence == lost_sequence  # the same slot as the REDEEM
    # Paid once, from alice's frozen funds; money is conserved.
    assert world.observer.balance(wallet_b.account) == 90
    assert world.observer.claims_paid[alice.account] == 90
    assert world.observer.available(alice.account) == 610
    assert world.observer.claims(alice.account) == []
    conserved(world)
    # The REDEEM/CLAIM pair at one slot is no fraud proof against shop B.
    replaced = FraudProof.of_blocks(wallet_b.redeem(pay_b.spend), claim, None)
    wallet_b.pending = None
    assert check_fraud_proof(replaced, world.committee) is None
    # Claiming the same spend again (next index, next sequence) is refused everywhere.
    again = wallet_b.claim(pay_b.spend, 1, status.owner_sequence, 90)
    assert all(isinstance(a, Refusal) for a in world.ask(again))
    # The claim lock holds index 0 at every validator.
    lock = (claim_lock(alice.account), 0)
    assert all(v.store.purse_locks(lock[0]).get(0) == claim for v in world.validators)  # type: ignore[attr-defined]


def test_claims_never_exceed_the_frozen_funds() -> None:
    world = World()
    alice = world.funded("alice", 350)  # 50 left after the purse
    purse, wallet_a, wallet_b, pay_a, pay_b = _double_spent(world, alice)
    # Before the fraud shows, validator 0 alone votes for alice's transfer of 40: it may
    # still be certified (with the faulty one's vote), so validator 0 counts it.
    assert isinstance(world.ask(alice.transfer(world.mint.account, 40), [0])[0], Vote)
    world.commit(wallet_a, wallet_a.redeem(pay_a.spend))
    assert all(isinstance(a, Refusal) for a in world.ask(wallet_b.redeem(pay_b.spend)))
    status = world.validators[1].purse_status(purse.purse_id, 0)
    assert status is not None and status.claimable == 50
    cautious = world.validators[0].purse_status(purse.purse_id, 0)
    assert cautious is not None and cautious.claimable == 10
    # Asking for the whole spend is refused: the owner's funds cover 50.
    too_much = wallet_b.claim_lost_redeem(0, status.owner_sequence, 90)
    answers = world.ask(too_much)
    assert all(isinstance(a, Refusal) and "available balance" in a.reason for a in answers)
    wallet_b.pending = None  # (nothing was voted: the test signs a fresh one)
    claim = wallet_b.claim(pay_b.spend, 0, status.owner_sequence, 50)
    refused = world.ask(claim, [0])[0]
    assert isinstance(refused, Refusal) and "cover 10" in refused.reason
    # Validators 1-3 froze alice before any quorum for her transfer: it is never certified.
    certificate = world.certify(claim, [1, 2, 3])
    assert certificate is not None
    world.broadcast(certificate)
    wallet_b.certified(certificate)
    assert world.certify(alice.pending or b"", [1, 2, 3]) is None
    assert world.observer.available(alice.account) == 0
    assert world.observer.claims_paid[alice.account] == 50
    conserved(world)


def test_expired_purse_is_refunded_after_the_grace_period() -> None:
    from neonet.proto.bank.validator import DEFAULT_REFUND_GRACE

    world = World()
    alice = world.funded("alice", 1000)
    purse = open_purse(world, alice, 300, cap=100, count=3)
    shop, shop_wallet = pos(world, "shop")
    late_shop, late_wallet = pos(world, "late-shop")
    early = purse.pay(shop_wallet.account, 80, now=100)
    late = purse.pay(late_wallet.account, 50, now=200)
    assert isinstance(shop.accept(early.encode(), now=101), Receipt)
    assert isinstance(late_shop.accept(late.encode(), now=201), Receipt)
    world.commit(shop_wallet, shop_wallet.redeem(early.spend), now=500)
    due = 10_000 + DEFAULT_REFUND_GRACE
    # Before the grace period ends the refund is refused; a wrong amount always is.
    refund = alice.refund(purse.purse_id, 220)
    answers = world.ask(refund, now=due - 1)
    assert all(isinstance(a, Refusal) and "refunded from" in a.reason for a in answers)
    # A REDEEM voted by one validator and not certified holds that validator's refund back.
    assert isinstance(world.ask(late_wallet.redeem(late.spend), [0], now=due - 10)[0], Vote)
    assert "pending" in world.ask(refund, [0], now=due)[0].reason  # type: ignore[union-attr]
    certificate = world.certify(refund, [1, 2, 3], now=due)
    assert certificate is not None
    world.broadcast(certificate)
    alice.certified(certificate)
    assert world.observer.balance(alice.account) == 700 + 220
    assert world.observer.purses[purse.purse_id].remaining == 0
    assert world.observer.purses[purse.purse_id].refunded
    conserved(world)
    # After the refund the late spend can never be redeemed: validators refuse it.
    answers = world.ask(late_wallet.pending or b"", [1, 2, 3], now=due)
    assert all(isinstance(a, Refusal) for a in answers)
    late_wallet.pending = None
    retry = late_wallet.redeem(late.spend)
    assert all(isinstance(a, Refusal) for a in world.ask(retry, now=None))
    # A second refund has nothing to give back.
    assert all(isinstance(a, Refusal) for a in world.ask(alice.refund(purse.purse_id, 1), now=due))
