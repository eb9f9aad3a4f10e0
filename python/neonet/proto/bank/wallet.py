"""A NeoBankof wallet: builds and signs its account's blocks, never two for one sequence.

Sans-I/O (``docs/bank.md``, "Wallet"). The wallet knows its certified head and at most
one pending block (signed, not yet certified). ``sign_next`` writes the signed block to
the injected ``WalletStore`` before it returns it, so after a crash (even SIGKILL between
signing and sending) the restarted wallet finds the pending block and sends that same
block again instead of signing another for the sequence. A wallet restored from its
keys alone (a new device) has no store history: it must sync its own certified chain
(``synced``) before it may sign anything.

Memory does not grow with the chain (``docs/bank.md``, "Keys and storage"): the wallet
keeps its head and the last ``TAIL`` certificates (``recent``, what a certification
request sends along); the whole chain is the store's (``WalletStore.chain``), read by
range.

``PurseWallet`` spends an offline purse: indexes in order, each persisted before the
spend is released, within the purse's cap, count and expiry.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Protocol

from neonet.core.errors import LocalProtocolError
from neonet.core.ledger import (
    CREDITS,
    Block,
    BlockKind,
    ChainHead,
    decode_block,
    sign_and_encode,
)
from neonet.proto.bank.messages import (
    Certificate,
    ClaimPayload,
    OfflinePayment,
    PursePayload,
    ReceivePayload,
    RedeemPayload,
    RefundPayload,
    Signer,
    Spend,
    TransferPayload,
    block_hash,
)

ZERO = bytes(32)


# Certificates a wallet keeps in memory: a certification request sends the last one, and
# a validator that says it is behind gets up to ``wire.MAX_PREVIOUS`` (16) older ones.
TAIL = 16


class WalletStore(Protocol):
    """Durable wallet state; each method returns once the data is on disk."""

    def save_pending(self, block: bytes) -> None: ...
    def save_certified(self, certificate: Certificate) -> None: ...
    def load_tail(self, count: int) -> tuple[list[Certificate], bytes | None]:
        """The last ``count`` certificates of the chain (in order) and the pending block."""
        ...

    def chain(self, start: int, count: int) -> list[Certificate]:
        """At most ``count`` certificates from sequence ``start`` on, in order."""
        ...


class ChainNotKept(LookupError):
    """The store no longer holds that part of the chain (``MemoryWalletStore(keep=...)``)."""


class MemoryWalletStore:
    """The in-memory ``WalletStore`` (tests, the bench).

    ``keep``: hold only the last ``keep`` certificates. The bench's one client process
    stands in for many wallets whose chains would each be on their own device's disk;
    keeping every chain here made the client grow ~20 MiB per 15,000 transfers and its
    collector slower with it. ``chain`` then raises ``ChainNotKept`` for a sequence that
    was dropped. Without ``keep`` the store holds the whole chain.
    """

    def __init__(self, keep: int | None = None) -> None:
        if keep is not None and keep < 1:
            raise ValueError("keep must be at least 1")
        self._certificates: deque[Certificate] = deque(maxlen=keep)
        self._count = 0  # certificates ever saved: the next sequence
        self.pending: bytes | None = None

    def save_pending(self, block: bytes) -> None:
        self.pending = block

    def save_certified(self, certificate: Certificate) -> None:
        self._certificates.append(certificate)
        self._count += 1
        if self.pending == certificate.block:
            self.pending = None

    def load_tail(self, count: int) -> tuple[list[Certificate], bytes | None]:
        kept = self._certificates
        return list(islice(kept, max(0, len(kept) - max(count, 0)), None)), self.pending

    def chain(self, start: int, count: int) -> list[Certificate]:
        first = self._count - len(self._certificates)  # sequence of the oldest kept
        if start < first:
            raise ChainNotKept(f"this store keeps sequences {first} and later only")
        end = min(start + max(count, 0), self._count)
        return list(islice(self._certificates, start - first, max(end - first, 0)))


class Wallet:
    """The signing side of one account."""

    def __init__(
        self,
        account: bytes,
        key: bytes,
        sign: Signer,
        store: WalletStore,
        *,
        restored: bool = False,
    ) -> None:
        self.account = account
        self.key = key  # the current signing key's public half
        self._sign = sign
        self.store = store
        tail, pending = store.load_tail(TAIL)
        self.head: ChainHead | None = None
        # The last certificates, oldest first, ending at the head: bounded, the chain is
        # the store's (``history``, ``store.chain``).
        self._recent: deque[Certificate] = deque(maxlen=TAIL)
        for certificate in tail:
            self._advance(certificate)
        self.pending: bytes | None = pending
        # The last block signed and its fields (its signature left out).
        self._signed: tuple[bytes, Block] | None = None
        # A wallet restored from keys alone must learn its chain before signing.
        self.needs_sync = restored and not tail

    def _advance(self, certificate: Certificate, block: Block | None = None) -> None:
        """Move the head to ``certificate``'s block (``block``: it decoded, if known)."""
        if block is None:
            block = certificate.decoded()
        key = block.payload if block.kind == BlockKind.ROTATE_KEY else block.key
        head_hash = block_hash(certificate.block)  # from the bytes: no re-encoding
        self.head = ChainHead(block.account, block.sequence, head_hash, block.balance, key)
        self._recent.append(certificate)

    @property
    def recent(self) -> list[Certificate]:
        """The last certificates (at most ``TAIL``), oldest first, ending at the head:
        the ``history`` argument of ``BankClient.certify``."""
        return list(self._recent)

    @property
    def length(self) -> int:
        """The number of certified blocks in the chain (the next block's sequence)."""
        return 0 if self.head is None else self.head.sequence + 1

    @property
    def history(self) -> list[Certificate]:
        """The whole certified chain, READ FROM THE STORE (O(chain) time and memory):
        for tests and small chains; page with ``store.chain`` otherwise."""
        return self.store.chain(0, self.length)

    @property
    def balance(self) -> int:
        return 0 if self.head is None else self.head.balance

    def sign_next(self, kind: BlockKind, amount: int, payload: bytes = b"") -> bytes:
        """Sign the next block and persist it before returning it (the one pending block)."""
        if self.needs_sync:
            raise LocalProtocolError("restored wallet: sync the account's chain before signing")
        if self.pending is not None:
            raise LocalProtocolError("a block is pending: get it certified (or resend it) first")
        head = self.head
        if head is not None and head.key != self.key:
            raise LocalProtocolError("the chain's current key is not this wallet's key")
        credit = kind in CREDITS
        debit = kind in (BlockKind.TRANSFER, BlockKind.OPEN_PURSE)
        balance = (
            self.balance + amount if credit else self.balance - amount if debit else self.balance
        )
        if balance < 0:
            raise LocalProtocolError(f"insufficient balance: {self.balance} < {amount}")
        unsigned = Block(
            self.account,
            0 if head is None else head.sequence + 1,
            ZERO if head is None else head.hash,
            kind,
            amount,
            balance,
            self.key if head is None else head.key,
            payload,
        )
        data = sign_and_encode(unsigned, self._sign)
        self.store.save_pending(data)  # durable before the signature leaves the wallet
        self.pending = data
        self._signed = (data, unsigned)  # all ``_advance`` reads of it (not the signature)
        return data

    def open(self) -> bytes:
        return self.sign_next(BlockKind.OPEN, 0)

    def issue(self, amount: int) -> bytes:
        return self.sign_next(BlockKind.ISSUE, amount)

    def transfer(self, payee: bytes, amount: int, memo: bytes = b"") -> bytes:
        return self.sign_next(BlockKind.TRANSFER, amount, TransferPayload(payee, memo).encode())

    def receive(self, payer: bytes, sequence: int, transfer_hash: bytes, amount: int) -> bytes:
        payload = ReceivePayload(payer, sequence, transfer_hash).encode()
        return self.sign_next(BlockKind.RECEIVE, amount, payload)

    def open_purse(self, amount: int, terms: PursePayload) -> bytes:
        return self.sign_next(BlockKind.OPEN_PURSE, amount, terms.encode())

    def redeem(self, spend: Spend) -> bytes:
        return self.sign_next(BlockKind.REDEEM, spend.amount, RedeemPayload(spend).encode())

    def claim(self, spend: Spend, claim_index: int, frozen_sequence: int, amount: int) -> bytes:
        """Claim ``amount`` (at most the spend's) for a spend that lost its double-spent
        slot, from the purse owner's frozen funds (``docs/bank.md``, "Claims")."""
        payload = ClaimPayload(spend, claim_index, frozen_sequence).encode()
        return self.sign_next(BlockKind.CLAIM, amount, payload)

    def claim_lost_redeem(self, claim_index: int, frozen_sequence: int, amount: int) -> bytes:
        """Replace the pending REDEEM, whose purse slot another spend's REDEEM won, by the
        CLAIM of the same spend at the same sequence.

        The one exception to "one block per sequence": that REDEEM can never be certified
        (one REDEEM per purse slot), validators replace their vote for it only when their
        ledger shows the slot won by another spend, and the pair is no fraud proof.
        """
        pending = self.pending
        block = None if pending is None else decode_block(pending)
        if pending is None or block is None or block.kind != BlockKind.REDEEM:
            raise LocalProtocolError("no pending REDEEM to replace")
        spend = RedeemPayload.decode(block.payload).spend
        self.pending = None
        try:
            return self.claim(spend, claim_index, frozen_sequence, amount)
        except BaseException:
            self.pending = pending
            raise

    def refund(self, purse_id: bytes, remaining: int) -> bytes:
        """Take back the ``remaining`` amount of this account's expired purse."""
        return self.sign_next(BlockKind.REFUND, remaining, RefundPayload(purse_id).encode())

    def rotate_key(self, new_key: bytes) -> bytes:
        return self.sign_next(BlockKind.ROTATE_KEY, 0, new_key)

    def use_key(self, key: bytes, sign: Signer) -> None:
        """Switch to the key a certified ROTATE_KEY installed."""
        self.key, self._sign = key, sign

    def certified(self, certificate: Certificate) -> None:
        """Record the certificate of the pending block (checked by the caller's ledger)."""
        if certificate.block != self.pending:
            raise LocalProtocolError("the certificate is not for the pending block")
        signed = self._signed
        known = signed[1] if signed is not None and signed[0] == certificate.block else None
        self.store.save_certified(certificate)
        self._advance(certificate, known)
        self.pending = None

    def synced(self, chain: list[Certificate]) -> None:
        """Adopt the account's certified chain learnt from the network (already verified):
        the whole chain, or its part from any sequence up to just after the head (as
        ``BankClient.sync_chain(..., start=wallet.head)`` returns it).

        A pending block that the chain contains is settled; one that it does not is kept
        (it may still be certified: resend it), unless its slot is taken by another block,
        which only a second signer (a stolen key) can have made.
        """
        first = chain[0].decoded().sequence if chain else 0
        if first > self.length:
            raise LocalProtocolError("the synced chain does not continue this wallet's")
        for certificate in chain[self.length - first :]:
            block = certificate.decoded()
            if block.account != self.account or block.sequence != self.length:
                raise LocalProtocolError("the synced chain does not continue this wallet's")
            self.store.save_certified(certificate)
            self._advance(certificate)
            if certificate.block == self.pending:
                self.pending = None
        if self.pending is not None and decode_block(self.pending).sequence <= (
            -1 if self.head is None else self.head.sequence
        ):
            raise LocalProtocolError("another block was certified at the pending block's slot")
        self.needs_sync = False


class PurseWallet:
    """Spends one certified purse offline, within its limits."""

    def __init__(
        self,
        certificate: Certificate,
        sign: Signer,
        next_index: int = 0,
        persist_index: Callable[[int], None] | None = None,
    ) -> None:
        block = certificate.decoded()
        if block.kind != BlockKind.OPEN_PURSE:
            raise ValueError("not a purse certificate")
        self.certificate = certificate
        self.purse_id = block.hash()
        self.terms = PursePayload.decode(block.payload)
        self._sign = sign
        self.next_index = next_index
        # Called with the next free index before a spend is released (durable storage).
        self._persist_index = persist_index

    def pay(self, payee: bytes, amount: int, now: int) -> OfflinePayment:
        """A signed spend of ``amount`` to ``payee`` at time ``now``, within the limits."""
        if not 0 < amount <= self.terms.cap:
            raise LocalProtocolError(f"amount must be 1..{self.terms.cap} (the per-payment cap)")
        if self.next_index >= self.terms.count:
            raise LocalProtocolError("the purse has no payments left")
        if now >= self.terms.expiry:
            raise LocalProtocolError("the purse has expired")
        spend = Spend(self.purse_id, self.next_index, amount, payee, now).signed(self._sign)
        if self._persist_index is not None:
            self._persist_index(self.next_index + 1)  # durable before the spend leaves
        self.next_index += 1
        return OfflinePayment(self.certificate, spend)
