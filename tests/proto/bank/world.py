"""Test helpers: a bank world of one committee (3f+1 validators), a mint and wallets."""

from __future__ import annotations

import hashlib

from neonet.core.keys import Ed25519Identity
from neonet.proto.bank.messages import Certificate, Committee
from neonet.proto.bank.state import Applied, BankLedger, MemoryCertificateArchive
from neonet.proto.bank.validator import (
    MemoryVoteStore,
    Refusal,
    Validator,
    Vote,
    VoteBatch,
    assemble_certificate,
)
from neonet.proto.bank.votes import vote_tree
from neonet.proto.bank.wallet import MemoryWalletStore, Wallet


def identity(label: str) -> Ed25519Identity:
    return Ed25519Identity.from_seed(hashlib.sha256(label.encode()).digest())


def key_of(ident: Ed25519Identity) -> bytes:
    return ident.public_key.data


def batch_vote(
    validator: Validator, block: bytes, others: list[bytes], now: int | None = None
) -> Vote | Refusal:
    """``validator``'s answer for ``block`` asked in one SIGN_BATCH after ``others`` (e.g.
    certified blocks, which it votes for again): a vote signed once over the batch's vote
    tree, with ``block``'s path, as a client builds it from a SIGN_BATCH answer."""
    batch = VoteBatch()
    for other in others:
        validator.handle_sign_request(other, now, batch=batch)
    answer = validator.handle_sign_request(block, now, batch=batch)
    signature = validator.sign_batch(batch)
    if isinstance(answer, Refusal):
        return answer
    assert signature is not None
    _, paths = vote_tree(batch.leaves)
    sides, path = paths[len(batch.leaves) - 1]
    return Vote(answer.validator, signature, answer.proof, sides, path)


class World:
    """Validators, a root-signed committee, a mint wallet and an observer ledger."""

    def __init__(self, f: int = 1, tag: str = "w") -> None:
        self.root = identity(f"{tag}-root")
        self.validator_ids = [identity(f"{tag}-validator-{i}") for i in range(3 * f + 1)]
        self.committee = Committee(0, tuple(key_of(v) for v in self.validator_ids)).signed(
            self.root.sign
        )
        self.mint_id = identity(f"{tag}-mint")
        self.mint_account = key_of(self.mint_id)
        # The validators keep one certificate per account in memory and read older ones
        # from an archive (as a validator on SQLite does, with a longer tail), so every
        # test also runs the archive's paths; the observer keeps its whole chains.
        self.validators = [
            Validator(
                self.committee,
                i,
                v.sign,
                self.mint_account,
                MemoryVoteStore(),
                archive=MemoryCertificateArchive(),
            )
            for i, v in enumerate(self.validator_ids)
        ]
        for validator in self.validators:
            validator.ledger.tail = 1
        self.observer = BankLedger(self.committee, self.mint_account)
        self.mint = self.wallet("mint", ident=self.mint_id)

    def wallet(self, label: str, ident: Ed25519Identity | None = None) -> Wallet:
        ident = ident or identity(f"wallet-{label}")
        return Wallet(key_of(ident), key_of(ident), ident.sign, MemoryWalletStore())

    def ask(
        self, block: bytes, validators: list[int] | None = None, now: int | None = None
    ) -> list[Vote | Refusal]:
        chosen = range(len(self.validators)) if validators is None else validators
        return [self.validators[i].handle_sign_request(block, now) for i in chosen]

    def certify(
        self, block: bytes, validators: list[int] | None = None, now: int | None = None
    ) -> Certificate | None:
        answers = self.ask(block, validators, now)
        votes = [answer for answer in answers if isinstance(answer, Vote)]
        return assemble_certificate(block, votes, self.committee)

    def broadcast(self, certificate: Certificate) -> None:
        for validator in self.validators:
            validator.handle_certificate(certificate)
        self.observer.apply(certificate)

    def commit(self, wallet: Wallet, block: bytes, now: int | None = None) -> Certificate:
        """Certify ``wallet``'s pending block with all validators and spread the certificate."""
        certificate = self.certify(block, now=now)
        assert certificate is not None, self.ask(block, now=now)
        assert self.observer.apply(certificate) is Applied.APPLIED
        for validator in self.validators:
            validator.handle_certificate(certificate)
        wallet.certified(certificate)
        return certificate

    def funded(self, label: str, amount: int) -> Wallet:
        """A wallet opened and paid ``amount`` by the mint (the mint issues it first)."""
        if self.mint.head is None:
            self.commit(self.mint, self.mint.open())
        self.commit(self.mint, self.mint.issue(amount))
        wallet = self.wallet(label)
        self.commit(wallet, wallet.open())
        transfer = self.commit(self.mint, self.mint.transfer(wallet.account, amount))
        block = transfer.decoded()
        self.commit(wallet, wallet.receive(block.account, block.sequence, block.hash(), amount))
        return wallet
