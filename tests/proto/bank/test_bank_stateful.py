"""Stateful Hypothesis tests of the NeoBankof invariants (ARCHITECTURE.md, "NeoBankof").

Random operations (issue, transfer, receive, purses, offline payments, redeems, key
rotation, equivocation, claims on frozen funds, refunds of expired purses) go to random
subsets of a 4-validator committee (partitions), one of which is Byzantine and votes for
anything; certificates reach validators late, in any order and more than once; honest
validators crash and restart from their vote store. After every step: money is conserved
on every ledger, no balance is negative, no slot has two certificates, each transfer and
purse slot is credited at most once, every pair of conflicting blocks or spends yields a
proof that checks (and no proof of non-conflicting items does), the offline limits hold
at each POS, each lost spend is paid by at most one claim (and never also redeemed),
claims on an owner never exceed its funds and get one certificate per claim index, and a
purse never pays out more than it held (redeems plus refund). At the end a fresh ledger
fed every certificate in a random order, with duplicates, reaches the same state.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from neonet.core.ledger import BlockKind
from neonet.proto.bank.messages import (
    Certificate,
    FraudProof,
    PursePayload,
    Receipt,
    Spend,
    check_fraud_proof,
    vote_message,
)
from neonet.proto.bank.pos import MemoryPosStore, PointOfSale
from neonet.proto.bank.state import BankLedger
from neonet.proto.bank.validator import (
    DEFAULT_REFUND_GRACE,
    Validator,
    Vote,
    assemble_certificate,
)
from neonet.proto.bank.wallet import MemoryWalletStore, PurseWallet, Wallet
from tests.proto.bank.world import World, batch_vote, identity, key_of

BYZANTINE = 3
STATS: list[tuple[int, ...]] = []
HONEST = [0, 1, 2]


class BankMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.world = World()
        world = self.world
        self.certificates: list[Certificate] = []
        self.slots: dict[tuple[bytes, int], set[bytes]] = {}
        self.signed: dict[tuple[bytes, int], set[bytes]] = {}
        self.redeem_slots: dict[tuple[bytes, int], set[bytes]] = {}
        self.claim_slots: dict[tuple[bytes, int], set[bytes]] = {}
        self.claimed_spends: dict[bytes, set[bytes]] = {}  # spend digest -> claim blocks
        self.purse_payouts: dict[bytes, dict[bytes, int]] = {}  # purse -> block -> amount
        self.applied_by: dict[int, list[Certificate]] = {i: [] for i in HONEST}
        self.labels = ["alice", "bob", "carol"]
        self.keys = {label: identity(f"wallet-{label}") for label in self.labels}
        self.wallets: dict[str, Wallet] = {}
        self.purses: list[PurseWallet] = []
        self.shops = [
            PointOfSale(
                world.committee, self._account(label), self.keys[label].sign, MemoryPosStore()
            )
            for label in ("bob", "carol")
        ]
        self.payments: list[tuple[int, bytes]] = []  # (shop index, encoded payment)
        self.frozen_seen: set[bytes] = set()
        self.cheaters: set[bytes] = set()
        self.spends: dict[tuple[bytes, int], dict[bytes, tuple[object, PurseWallet]]] = {}
        self.rotations = 0
        self.new_keys: dict[bytes, object] = {}
        self._run(world.mint, world.mint.open(), list(range(4)), list(range(4)))
        for label in self.labels:
            wallet = world.wallet(label)
            self.wallets[label] = wallet
            self._run(wallet, wallet.open(), list(range(4)), list(range(4)))
        for label in self.labels:
            world.mint.pending or self._run(
                world.mint, world.mint.issue(1000), [0, 1, 2, 3], HONEST
            )
            self._run(
                world.mint, world.mint.transfer(self._account(label), 1000), [0, 1, 2, 3], HONEST
            )
            transfer = world.mint.recent[-1].decoded()
            wallet = self.wallets[label]
            block = wallet.receive(transfer.account, transfer.sequence, transfer.hash(), 1000)
            self._run(wallet, block, [0, 1, 2, 3], HONEST)

    def _account(self, label: str) -> bytes:
        return key_of(identity(f"wallet-{label}"))

    # Driving the committee --------------------------------------------------------------

    def _byzantine_vote(self, block: bytes) -> Vote:
        from neonet.core.ledger import decode_block

        message = vote_message(self.world.committee.id(), decode_block(block).hash())
        return Vote(BYZANTINE, self.world.validator_ids[BYZANTINE].sign(message))

    def _votes(self, block: bytes, reach: list[int], now: int | None = None) -> list[Vote]:
        votes = []
        # Half of the honest answers are batch votes (signed over a vote tree): the block
        # rides in a SIGN_BATCH after re-votes for certified blocks of the account.
        from neonet.core.ledger import decode_block

        decoded = decode_block(block)
        ledger = self.world.validators[HONEST[0]].ledger
        head = ledger.head(decoded.account)
        start = 0 if head is None else max(head.sequence - 2, 0)
        # Up to three certified blocks, older ones read from the validator's archive.
        earlier = [c.block for c in ledger.chain(decoded.account, start, 3)]
        for index in reach:
            if index == BYZANTINE:
                votes.append(self._byzantine_vote(block))
                continue
            validator = self.world.validators[index]
            if decoded.sequence % 2 and earlier:
                answer = batch_vote(validator, block, earlier[: 1 + index % 3], now)
            else:
                answer = validator.handle_sign_request(block, now)
            if isinstance(answer, Vote):
                votes.append(answer)
            elif answer.proof is not None:
                self._spread_proof(answer.proof)
        return votes

    def _run(
        self,
        wallet: Wallet,
        block: bytes,
        reach: list[int],
        spread: list[int],
        now: int | None = None,
    ) -> bool:
        """Ask the reachable validators; on a quorum, give the certificate to ``spread``."""
        from neonet.core.ledger import decode_block

        decoded = decode_block(block)
        self.signed.setdefault((decoded.account, decoded.sequence), set()).add(block)
        votes = self._votes(block, reach, now)
        certificate = assemble_certificate(block, votes, self.world.committee)
        if certificate is None:
            return False
        self._record(certificate)
        for index in spread:
            if index != BYZANTINE:
                self.world.validators[index].handle_certificate(certificate)
                self.applied_by[index].append(certificate)
        self.world.observer.apply(certificate)
        if wallet.pending == block:
            wallet.certified(certificate)
            if decoded.kind == BlockKind.ROTATE_KEY:
                new = self.new_keys[decoded.payload]
                wallet.use_key(key_of(new), new.sign)
        return True

    def _record(self, certificate: Certificate) -> None:
        block = certificate.decoded()
        self.certificates.append(certificate)
        self.slots.setdefault((block.account, block.sequence), set()).add(block.hash())
        if block.kind == BlockKind.REDEEM:
            from neonet.proto.bank.messages import RedeemPayload

            spend = RedeemPayload.decode(block.payload).spend
            self.redeem_slots.setdefault((spend.purse_id, spend.index), set()).add(block.hash())
            payouts = self.purse_payouts.setdefault(spend.purse_id, {})
            payouts[block.hash()] = block.amount
        elif block.kind == BlockKind.REFUND:
            from neonet.proto.bank.messages import RefundPayload

            purse_id = RefundPayload.decode(block.payload).purse_id
            self.purse_payouts.setdefault(purse_id, {})[block.hash()] = block.amount
        elif block.kind == BlockKind.CLAIM:
            from neonet.proto.bank.messages import ClaimPayload

            claim = ClaimPayload.decode(block.payload)
            owner = next(
                p.certificate.decoded().account
                for p in self.purses
                if p.purse_id == claim.spend.purse_id
            )
            self.claim_slots.setdefault((owner, claim.claim_index), set()).add(block.hash())
            self.claimed_spends.setdefault(claim.spend.digest(), set()).add(block.hash())

    def _spread_proof(self, proof: FraudProof) -> None:
        account = check_fraud_proof(proof, self.world.committee)
        assert account is not None, "a validator produced a proof that does not check"
        self.frozen_seen.add(account)
        for index in HONEST:
            self.world.validators[index].handle_fraud_proof(proof)
        self.world.observer.apply_fraud_proof(proof)

    def _ready(self, label: str) -> Wallet | None:
        wallet = self.wallets[label]
        return None if wallet.pending is not None else wallet

    # Rules ------------------------------------------------------------------------------

    # Mostly everyone is reachable; sometimes a partition leaves some validators out.
    reach = st.one_of(st.just([0, 1, 2, 3]), st.lists(st.sampled_from([0, 1, 2, 3]), unique=True))

    @rule(amount=st.integers(1, 10**6), reach=reach, spread=reach)
    def issue(self, amount: int, reach: list[int], spread: list[int]) -> None:
        mint = self.world.mint
        if mint.pending is None:
            self._run(mint, mint.issue(amount), reach, spread)

    @rule(
        payer=st.sampled_from(["mint", "alice", "bob", "carol"]),
        payee=st.sampled_from(["alice", "bob", "carol"]),
        fraction=st.floats(0.01, 1.0),
        reach=reach,
        spread=reach,
    )
    def transfer(
        self, payer: str, payee: str, fraction: float, reach: list[int], spread: list[int]
    ) -> None:
        wallet = self.world.mint if payer == "mint" else self.wallets[payer]
        amount = int(wallet.balance * fraction)
        if (
            wallet.pending is None
            and amount > 0
            and wallet.key == (wallet.head.key if wallet.head else wallet.key)
        ):
            self._run(wallet, wallet.transfer(self._account(payee), amount), reach, spread)

    @rule(
        label=st.sampled_from(["alice", "bob", "carol"]),
        reach=reach,
        spread=reach,
        replay=st.booleans(),
    )
    def receive(self, label: str, reach: list[int], spread: list[int], replay: bool) -> None:
        wallet = self._ready(label)
        if wallet is None:
            return
        credits = self.world.observer.pending_credits(wallet.account)
        if replay and self.world.observer.received:
            payer, sequence = sorted(self.world.observer.received)[0]
            block = self.world.observer.accounts[payer].blocks[sequence]
            from neonet.core.ledger import decode_block

            decoded = decode_block(block)
            self._run(
                wallet,
                wallet.receive(payer, sequence, decoded.hash(), decoded.amount),
                reach,
                spread,
            )
        elif credits:
            (payer, sequence), item = credits[0]
            self._run(
                wallet,
                wallet.receive(payer, sequence, item.transfer_hash, item.amount),
                reach,
                spread,
            )

    @rule(label=st.sampled_from(["mint", "alice", "bob", "carol"]), reach=reach)
    def resend_pending(self, label: str, reach: list[int]) -> None:
        wallet = self.world.mint if label == "mint" else self.wallets[label]
        if wallet.pending is not None:
            self._run(wallet, wallet.pending, reach, HONEST)

    @rule(
        index=st.sampled_from(HONEST),
        order=st.randoms(use_true_random=False),
        duplicates=st.booleans(),
    )
    def sync_validator(self, index: int, order: object, duplicates: bool) -> None:
        certificates = list(self.certificates) * (2 if duplicates else 1)
        order.shuffle(certificates)  # type: ignore[attr-defined]
        for certificate in certificates:
            self.world.validators[index].handle_certificate(certificate)

    @rule(index=st.sampled_from(HONEST))
    def crash_and_restart_validator(self, index: int) -> None:
        old = self.world.validators[index]
        world = self.world
        new = Validator(
            world.committee, index, world.validator_ids[index].sign, world.mint_account, old.store
        )
        for certificate in self.applied_by[index]:
            new.handle_certificate(certificate)
        for proof in old.ledger.frozen.values():
            new.handle_fraud_proof(proof)
        world.validators[index] = new

    @rule(
        label=st.sampled_from(["alice", "bob", "carol"]),
        split=st.sets(st.sampled_from(HONEST)),
        payees=st.tuples(
            st.sampled_from(["alice", "bob", "carol"]), st.sampled_from(["alice", "bob", "carol"])
        ),
    )
    def equivocate(self, label: str, split: set[int], payees: tuple[str, str]) -> None:
        wallet = self._ready(label)
        if (
            wallet is None
            or wallet.balance < 2
            or wallet.head is None
            or wallet.head.key != wallet.key
        ):
            return
        twin = Wallet(wallet.account, wallet.key, wallet._sign, MemoryWalletStore())
        twin.synced(list(wallet.history))
        before = wallet.head.sequence
        first = wallet.transfer(self._account(payees[0]), wallet.balance)
        second = twin.transfer(self._account(payees[1]), wallet.balance - 1)
        self._run(wallet, first, [*sorted(split), BYZANTINE], HONEST)
        rest = [i for i in HONEST if i not in split]
        self._run(twin, second, [*rest, BYZANTINE], HONEST)
        # Fork detection is complete: the two signed blocks always make a proof.
        previous = self.world.observer.certificate_at(wallet.account, before)
        proof = FraudProof.of_blocks(first, second, previous)
        assert check_fraud_proof(proof, self.world.committee) == wallet.account
        self._spread_proof(proof)

    @rule(
        label=st.sampled_from(["alice", "bob", "carol"]),
        cap=st.integers(1, 150),
        count=st.integers(1, 5),
    )
    def open_purse(self, label: str, cap: int, count: int) -> None:
        wallet = self._ready(label)
        if (
            wallet is None
            or wallet.balance < cap * count
            or wallet.head is None
            or wallet.head.key != wallet.key
        ):
            return
        purse_key = identity(f"purse-{len(self.purses)}")
        terms = PursePayload(key_of(purse_key), cap, count, expiry=1000)
        if self._run(wallet, wallet.open_purse(cap * count, terms), list(range(4)), HONEST):
            self.purses.append(PurseWallet(wallet.recent[-1], purse_key.sign))

    @rule(data=st.data())
    @precondition(lambda self: bool(self.purses))
    def pay_offline(self, data: st.DataObject) -> None:
        purse = data.draw(st.sampled_from(self.purses))
        shop = data.draw(st.sampled_from([0, 1]))
        amount = data.draw(st.integers(1, purse.terms.cap + 2))
        double = data.draw(st.booleans())
        now = data.draw(st.integers(0, 1100))
        if double:
            purse = PurseWallet(
                purse.certificate, purse._sign, data.draw(st.integers(0, purse.terms.count))
            )
        from neonet.core.errors import LocalProtocolError

        try:
            payment = purse.pay(self.shops[shop].account, amount, now)
        except LocalProtocolError:
            assert (
                amount > purse.terms.cap
                or now >= purse.terms.expiry
                or purse.next_index >= purse.terms.count
            )
            return
        slot = (payment.spend.purse_id, payment.spend.index)
        seen = self.spends.setdefault(slot, {})
        seen[payment.spend.digest()] = (payment.spend, purse)
        if len(seen) > 1:
            self.cheaters.add(purse.certificate.decoded().account)
        answer = self.shops[shop].accept(payment.encode(), now)
        if isinstance(answer, Receipt):
            self.payments.append((shop, payment.encode()))
        elif answer.proof is not None:
            self._spread_proof(answer.proof)

    # Times around the refund date of the purses (expiry 1000), or none.
    when = st.sampled_from([None, *(1000 + DEFAULT_REFUND_GRACE + d for d in range(-2, 4))])

    @rule(
        data=st.data(),
        amounts=st.tuples(st.integers(1, 150), st.integers(1, 150)),
        resync=st.booleans(),
    )
    @precondition(lambda self: bool(self.purses))
    def double_spend(self, data: st.DataObject, amounts: tuple[int, int], resync: bool) -> None:
        """A purse owner (alice, mostly: not a shop) spends one slot at both shops, which
        are offline together; at resync both try to redeem (the first wins, the second
        gets a proof and may claim)."""
        alice = self._account("alice")  # not a shop: her shops can claim from her
        owned = [p for p in self.purses if p.certificate.decoded().account == alice]
        if not owned:
            return
        purse = data.draw(st.sampled_from(owned))
        index = data.draw(st.integers(0, purse.terms.count - 1))
        paid = []
        for shop, amount in zip((0, 1), amounts, strict=True):
            copy = PurseWallet(purse.certificate, purse._sign, index)
            payment = copy.pay(self.shops[shop].account, min(amount, purse.terms.cap), now=10)
            slot = (payment.spend.purse_id, payment.spend.index)
            self.spends.setdefault(slot, {})[payment.spend.digest()] = (payment.spend, copy)
            answer = self.shops[shop].accept(payment.encode(), now=10)
            if isinstance(answer, Receipt):
                self.payments.append((shop, payment.encode()))
                paid.append((shop, payment.spend))
        if len(self.spends[slot]) > 1:
            self.cheaters.add(purse.certificate.decoded().account)
        if data.draw(st.booleans()):
            paid.reverse()  # either shop may be first at resync
        for shop, spend in paid if resync else []:
            wallet = self._ready(["bob", "carol"][shop])
            if wallet is not None and wallet.head is not None and wallet.head.key == wallet.key:
                self._run(wallet, wallet.redeem(spend), [0, 1, 2, 3], HONEST)
        if resync and len(paid) == 2:
            # The loser claims at once (replacing its refused REDEEM, if it sent one).
            excess = data.draw(st.sampled_from([0, 0, 0, 1]))  # mostly a valid amount
            self._claim(paid[1][0], paid[1][1], data, [0, 1, 2, 3], excess)

    @rule(data=st.data(), reach=reach, now=when)
    @precondition(lambda self: bool(self.payments))
    def redeem(self, data: st.DataObject, reach: list[int], now: int | None) -> None:
        from neonet.proto.bank.messages import OfflinePayment

        shop, encoded = data.draw(st.sampled_from(self.payments))
        wallet = self._ready(["bob", "carol"][shop])
        if wallet is not None and wallet.head is not None and wallet.head.key == wallet.key:
            self._run(
                wallet,
                wallet.redeem(OfflinePayment.decode(encoded).spend),
                [*reach, 0, 1, 2],
                HONEST,
                now,
            )

    @rule(data=st.data(), reach=reach, excess=st.sampled_from([0, 0, 1, 3]))
    @precondition(lambda self: bool(self.payments))
    def claim(self, data: st.DataObject, reach: list[int], excess: int) -> None:
        """A shop claims a spend that lost its slot (replacing its lost REDEEM, if any)."""
        from neonet.proto.bank.messages import OfflinePayment

        observer = self.world.observer
        lost = [
            (shop, spend)
            for shop, encoded in self.payments
            for spend in [OfflinePayment.decode(encoded).spend]
            if observer.redeemed.get((spend.purse_id, spend.index)) not in (None, spend.digest())
        ]
        if not lost:
            return
        shop, spend = data.draw(st.sampled_from(lost))
        self._claim(shop, spend, data, reach, excess)

    def _claim(
        self, shop: int, spend: Spend, data: st.DataObject, reach: list[int], excess: int
    ) -> None:
        from neonet.core.ledger import decode_block
        from neonet.proto.bank.messages import RedeemPayload

        wallet = self.wallets[["bob", "carol"][shop]]
        if wallet.head is None or wallet.head.key != wallet.key:
            return
        asked = data.draw(st.sampled_from(HONEST))
        status = self.world.validators[asked].purse_status(spend.purse_id, spend.index)
        if status is None or status.redeemed in (None, spend):
            return
        amount = min(spend.amount, status.claimable) + excess
        if amount == 0:
            return
        args = (status.next_claim_index, status.owner_sequence, amount)
        if wallet.pending is None:
            block = wallet.claim(spend, *args)
        else:
            pending = decode_block(wallet.pending)
            if pending.kind != BlockKind.REDEEM:
                return
            if RedeemPayload.decode(pending.payload).spend != spend:
                return
            block = wallet.claim_lost_redeem(*args)
        self._run(wallet, block, [*reach, 0, 1, 2], HONEST)

    @rule(data=st.data(), reach=reach, now=when, short=st.integers(0, 4).map(lambda x: x == 0))
    @precondition(lambda self: bool(self.purses))
    def refund(self, data: st.DataObject, reach: list[int], now: int | None, short: bool) -> None:
        """A purse owner takes back the remainder (right, or one short) after expiry."""
        purse = data.draw(st.sampled_from(self.purses))
        owner = purse.certificate.decoded().account
        label = next((k for k in self.labels if self._account(k) == owner), None)
        wallet = None if label is None else self._ready(label)
        if wallet is None or wallet.head is None or wallet.head.key != wallet.key:
            return
        ledger = self.world.validators[data.draw(st.sampled_from(HONEST))].ledger
        state = ledger.purses.get(purse.purse_id)  # unknown to a validator left behind
        remaining = 0 if state is None else state.remaining - (1 if short else 0)
        if remaining > 0:
            refund = wallet.refund(purse.purse_id, remaining)
            self._run(wallet, refund, [*reach, 0, 1, 2], HONEST, now)

    @rule(label=st.sampled_from(["alice", "bob", "carol"]))
    def rotate_key(self, label: str) -> None:
        wallet = self._ready(label)
        if wallet is None or wallet.head is None or wallet.account in self.frozen_seen:
            return
        new = identity(f"rotated-{label}-{self.rotations}")
        self.rotations += 1
        self.new_keys[key_of(new)] = new
        self._run(wallet, wallet.rotate_key(key_of(new)), list(range(4)), HONEST)

    # Invariants -------------------------------------------------------------------------

    def _ledgers(self) -> list[BankLedger]:
        return [self.world.observer] + [self.world.validators[i].ledger for i in HONEST]

    @invariant()
    def money_is_conserved_and_never_negative(self) -> None:
        for ledger in self._ledgers():
            issued, held = ledger.conservation()
            assert issued == held
            assert all(state.head.balance >= 0 for state in ledger.accounts.values())
            # Claims never take more than the owner's funds.
            assert all(ledger.available(account) >= 0 for account in ledger.accounts)
            assert all(purse.remaining >= 0 for purse in ledger.purses.values())

    @invariant()
    def credits_by_payee_match_the_transfers_in_flight(self) -> None:
        for ledger in self._ledgers():
            payees = {item.payee for item in ledger.incoming.values()}
            for payee in payees:
                expected = [(s, i) for s, i in ledger.incoming.items() if i.payee == payee]
                assert ledger.pending_credits(payee) == expected
                assert ledger.pending_credits(payee, 1) == expected[:1]
            assert set(ledger._incoming_to) == payees

    @invariant()
    def at_most_one_certificate_per_slot(self) -> None:
        assert all(len(hashes) == 1 for hashes in self.slots.values())
        assert all(len(hashes) == 1 for hashes in self.redeem_slots.values())
        assert all(len(hashes) == 1 for hashes in self.claim_slots.values())
        for ledger in self._ledgers():
            assert ledger.conflicts == []

    @invariant()
    def credited_at_most_once(self) -> None:
        receipts: dict[tuple[bytes, int], int] = {}
        from neonet.proto.bank.messages import ReceivePayload

        for certificate in self.certificates:
            block = certificate.decoded()
            if block.kind == BlockKind.RECEIVE:
                ref = ReceivePayload.decode(block.payload)
                key = (ref.payer, ref.sequence)
                receipts[key] = receipts.get(key, 0) + 1
        assert all(count == 1 for count in receipts.values())

    @invariant()
    def claims_paid_at_most_once_and_purses_never_overpay(self) -> None:
        assert all(len(blocks) == 1 for blocks in self.claimed_spends.values())
        redeemed = {digest for ledger in self._ledgers() for digest in ledger.redeemed.values()}
        assert not redeemed & set(self.claimed_spends)
        for purse in self.purses:
            payouts = self.purse_payouts.get(purse.purse_id, {})
            assert sum(payouts.values()) <= purse.certificate.decoded().amount
        for ledger in self._ledgers():
            for owner, paid in ledger.claims_paid.items():
                assert paid <= ledger.balance(owner)
                assert owner in ledger.frozen

    @invariant()
    def offline_limits_hold_at_each_pos(self) -> None:
        for shop in self.shops:
            store = shop.store
            assert isinstance(store, MemoryPosStore)
            per_purse: dict[bytes, list[int]] = {}
            for (purse_id, index), (payment, _) in store.accepted.items():
                purse = PursePayload.decode(payment.purse.decoded().payload)
                assert index < purse.count and 0 < payment.spend.amount <= purse.cap
                per_purse.setdefault(purse_id, []).append(payment.spend.amount)
            for purse_id, amounts in per_purse.items():
                purse_block = next(
                    p.certificate.decoded() for p in self.purses if p.purse_id == purse_id
                )
                assert sum(amounts) <= purse_block.amount

    @invariant()
    def proofs_are_sound(self) -> None:
        # Two certified blocks of different slots never make a proof.
        if len(self.certificates) >= 2:
            a, b = self.certificates[-1].block, self.certificates[-2].block
            if a != b:
                assert (
                    check_fraud_proof(FraudProof.of_blocks(a, b, None), self.world.committee)
                    is None
                )
        # Only accounts that signed two blocks, or two spends, for one slot are ever frozen.
        cheaters = self.cheaters | {
            account for (account, _), blocks in self.signed.items() if len(blocks) > 1
        }
        for ledger in self._ledgers():
            assert set(ledger.frozen) <= cheaters
        assert self.frozen_seen <= cheaters

    @invariant()
    def spend_forks_are_always_provable(self) -> None:
        for spends in self.spends.values():
            if len(spends) < 2:
                continue
            (a, purse), (b, _) = list(spends.values())[:2]
            proof = FraudProof.of_spends(a, b, purse.certificate)  # type: ignore[arg-type]
            owner = purse.certificate.decoded().account
            assert check_fraud_proof(proof, self.world.committee) == owner

    def teardown(self) -> None:
        if not hasattr(self, "world"):
            return
        STATS.append(
            (
                len(self.certificates),
                len(self.frozen_seen),
                len(self.payments),
                len(self.claimed_spends),
                sum(1 for p in self.world.observer.purses.values() if p.refunded),
                len(self.purses),
            )
        )
        import random

        shuffled = list(self.certificates) * 2
        random.Random(len(shuffled)).shuffle(shuffled)
        fresh = BankLedger(self.world.committee, self.world.mint_account)
        for certificate in shuffled:
            fresh.apply(certificate)
        assert fresh.parked_count() == 0
        assert fresh.snapshot()[:5] == self.world.observer.snapshot()[:5]
        assert fresh.snapshot()[6:] == self.world.observer.snapshot()[6:]


BankMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestBankInvariants = BankMachine.TestCase
