"""Test helpers: accounts that write signed block chains, and ZIP-215 edge-case signatures."""

from __future__ import annotations

import hashlib

from nacl.signing import SigningKey

from neonet.core import zip215
from neonet.core.ledger import Block, BlockKind, ChainHead, encode_block, sign_block

CREDITS = {
    BlockKind.ISSUE,
    BlockKind.RECEIVE,
    BlockKind.REDEEM,
    BlockKind.CLAIM,
    BlockKind.REFUND,
}
DEBITS = {BlockKind.TRANSFER, BlockKind.OPEN_PURSE}


def signing_key(seed: int) -> SigningKey:
    return SigningKey(hashlib.sha256(seed.to_bytes(8, "little")).digest())


class Account:
    """Writes a chain as a correct wallet would; the keyword overrides forge faults."""

    def __init__(self, seed: int) -> None:
        self.signer = signing_key(seed)
        self.key = bytes(self.signer.verify_key)
        self.account = self.key
        self.head: ChainHead | None = None
        self.blocks: list[bytes] = []

    def next_balance(self, kind: int, amount: int) -> int:
        balance = 0 if self.head is None else self.head.balance
        if kind in CREDITS:
            return balance + amount
        if kind in DEBITS:
            return balance - amount
        return balance

    def block(
        self,
        kind: int,
        amount: int = 0,
        *,
        payload: bytes = b"",
        balance: int | None = None,
        sequence: int | None = None,
        previous: bytes | None = None,
        key: bytes | None = None,
        account: bytes | None = None,
        signer: SigningKey | None = None,
        advance: bool = True,
    ) -> bytes:
        """Append a block (linked, balanced and signed unless overridden) and return it."""
        block = Block(
            account=self.account if account is None else account,
            sequence=(0 if self.head is None else self.head.sequence + 1)
            if sequence is None
            else sequence,
            previous=(bytes(32) if self.head is None else self.head.hash)
            if previous is None
            else previous,
            kind=kind,
            amount=amount,
            balance=self.next_balance(kind, amount) if balance is None else balance,
            key=self.key if key is None else key,
            payload=payload,
        )
        signer = self.signer if signer is None else signer
        signed = sign_block(block, lambda message: signer.sign(message).signature)
        encoded = encode_block(signed)
        if advance:
            self.head = ChainHead(
                signed.account, signed.sequence, signed.hash(), signed.balance, signed.key
            )
            self.blocks.append(encoded)
        return encoded

    def rotate(self, new_seed: int) -> bytes:
        new_signer = signing_key(new_seed)
        new_key = bytes(new_signer.verify_key)
        encoded = self.block(BlockKind.ROTATE_KEY, payload=new_key)
        assert self.head is not None
        self.head = ChainHead(
            self.head.account, self.head.sequence, self.head.hash, self.head.balance, new_key
        )
        self.signer, self.key = new_signer, new_key
        return encoded


def torsion_signature(seed: int, message: bytes, key_torsion: int, r_torsion: int) -> tuple:
    """A signature valid under ZIP-215 (cofactored) whose A and R carry small-order parts.

    A = [a]B + T_A and R = [r]B + T_R, S = r + k*a: [8][S]B = [8]R + [8][k]A holds, but the
    cofactorless [S]B = R + [k]A does not unless T_R + [k]T_A = 0, so libsodium refuses
    most of these and the pure twin must take its exact ZIP-215 path.
    Returns (public_key, message, signature).
    """
    torsion = zip215.small_order_points()
    secret = int.from_bytes(hashlib.sha256(b"a" + bytes([seed])).digest(), "little") % zip215.L
    nonce = int.from_bytes(hashlib.sha256(b"r" + bytes([seed])).digest(), "little") % zip215.L
    public_point = zip215.add(zip215.multiply(secret, zip215.BASE), torsion[key_torsion])
    r_point = zip215.add(zip215.multiply(nonce, zip215.BASE), torsion[r_torsion])
    public_key = zip215.encode_point(public_point)
    r_bytes = zip215.encode_point(r_point)
    k = int.from_bytes(hashlib.sha512(r_bytes + public_key + message).digest(), "little")
    s = (nonce + k * secret) % zip215.L
    return public_key, message, r_bytes + s.to_bytes(32, "little")
