"""Child process for the SIGKILL test: a wallet paying through 4 validators, all on SQLite.

Run as ``python -m tests.apps.bank.crash_wallet DIR``. Each round it resends its pending
block or signs a new one, prints ``signed <sequence> <hash>`` once the block is durable,
gathers votes, stores the certificate at each validator and in the wallet, and prints
``certified <sequence>``. The parent kills it with SIGKILL at arbitrary points.
"""

from __future__ import annotations

import sys
from pathlib import Path

from neonet.apps.bank.store import SqliteVoteStore, SqliteWalletStore
from neonet.core.ledger import decode_block
from neonet.proto.bank.validator import Validator, Vote, assemble_certificate
from neonet.proto.bank.wallet import Wallet
from tests.proto.bank.world import World, identity, key_of


def open_world(directory: Path) -> tuple[World, list[SqliteVoteStore], Wallet]:
    world = World(tag="crash")
    stores = [SqliteVoteStore(directory / f"validator-{i}.db") for i in range(4)]
    world.validators = [
        Validator(world.committee, i, ident.sign, world.mint_account, stores[i])
        for i, ident in enumerate(world.validator_ids)
    ]
    for validator, store in zip(world.validators, stores, strict=True):
        for certificate in store.certificates():
            validator.handle_certificate(certificate)
    mint = Wallet(
        world.mint_account,
        world.mint_account,
        world.mint_id.sign,
        SqliteWalletStore(directory / "wallet.db"),
    )
    return world, stores, mint


def step(world: World, stores: list[SqliteVoteStore], wallet: Wallet, payee: bytes) -> None:
    if wallet.pending is not None:
        block = wallet.pending
    elif wallet.head is None:
        block = wallet.open()
    elif wallet.balance < 10:
        block = wallet.issue(1000)
    else:
        block = wallet.transfer(payee, 1)
    decoded = decode_block(block)
    print("signed", decoded.sequence, decoded.hash().hex(), flush=True)
    votes = []
    for validator in world.validators:
        answer = validator.handle_sign_request(block)
        if isinstance(answer, Vote):
            votes.append(answer)
    certificate = assemble_certificate(block, votes, world.committee)
    if certificate is None:
        raise SystemExit(f"no certificate for sequence {decoded.sequence}: {votes}")
    for validator, store in zip(world.validators, stores, strict=True):
        validator.handle_certificate(certificate)
        store.add_certificate(certificate)
    wallet.certified(certificate)
    print("certified", decoded.sequence, flush=True)


def main() -> None:
    directory = Path(sys.argv[1])
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 10**9
    world, stores, wallet = open_world(directory)
    payee = key_of(identity("crash-payee"))
    if wallet.pending is not None:
        print("resumed", decode_block(wallet.pending).sequence, flush=True)
    for _ in range(limit):
        step(world, stores, wallet, payee)


if __name__ == "__main__":
    main()
