"""A wallet's memory does not grow with its chain: a bounded tail in memory, the chain in
the store (``MemoryWalletStore`` and ``SqliteWalletStore``), read by range."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from neonet.apps.bank.store import SqliteWalletStore
from neonet.cli.bank import BankCliError, print_history
from neonet.core.errors import LocalProtocolError
from neonet.proto.bank.messages import Certificate, block_hash
from neonet.proto.bank.wallet import (
    TAIL,
    ChainNotKept,
    MemoryWalletStore,
    Wallet,
    WalletStore,
)
from tests.proto.bank.world import World, identity, key_of

TRANSFERS = 3 * TAIL  # the chain: open, receive, then this many transfers

StoreFactory = Callable[[Path], WalletStore]
STORES: dict[str, StoreFactory] = {
    "memory": lambda _: MemoryWalletStore(),
    "sqlite": lambda directory: SqliteWalletStore(directory / "wallet.db"),
}


def _long_wallet(world: World, store: WalletStore, transfers: int = TRANSFERS) -> Wallet:
    """A wallet on ``store``, funded by the mint, that then paid ``transfers`` times."""
    ident = identity("wallet-long")
    wallet = Wallet(key_of(ident), key_of(ident), ident.sign, store)
    world.commit(world.mint, world.mint.open())
    world.commit(world.mint, world.mint.issue(10**6))
    world.commit(wallet, wallet.open())
    paid = world.commit(world.mint, world.mint.transfer(wallet.account, 10**6)).decoded()
    world.commit(wallet, wallet.receive(paid.account, paid.sequence, paid.hash(), 10**6))
    payee = key_of(identity("payee"))
    for amount in range(1, transfers + 1):
        world.commit(wallet, wallet.transfer(payee, amount))
    return wallet


def _sequences(certificates: list[Certificate]) -> list[int]:
    return [c.decoded().sequence for c in certificates]


@pytest.mark.parametrize("kind", sorted(STORES))
def test_tail_is_bounded_and_the_chain_stays_in_the_store(kind: str, tmp_path: Path) -> None:
    world = World()
    store = STORES[kind](tmp_path)
    wallet = _long_wallet(world, store)
    length = 2 + TRANSFERS
    assert wallet.length == length and wallet.head is not None
    assert wallet.head.sequence == length - 1
    # Memory: the last TAIL certificates only, consecutive, ending at the head.
    assert _sequences(wallet.recent) == list(range(length - TAIL, length))
    assert block_hash(wallet.recent[-1].block) == wallet.head.hash
    assert wallet.balance == 10**6 - TRANSFERS * (TRANSFERS + 1) // 2
    # The store has the whole chain, by range.
    assert _sequences(store.chain(0, 5)) == [0, 1, 2, 3, 4]
    assert _sequences(store.chain(length - 3, 100)) == [length - 3, length - 2, length - 1]
    assert store.chain(length, 10) == []
    assert store.chain(3, 0) == store.chain(3, -1) == store.load_tail(0)[0] == []
    full = wallet.history  # reads the store
    assert _sequences(full) == list(range(length))
    assert [c.block for c in full[-TAIL:]] == [c.block for c in wallet.recent]
    tail, pending = store.load_tail(4)
    assert _sequences(tail) == list(range(length - 4, length)) and pending is None


@pytest.mark.parametrize("kind", sorted(STORES))
def test_synced_with_a_long_chain(kind: str, tmp_path: Path) -> None:
    world = World()
    wallet = _long_wallet(world, MemoryWalletStore())
    chain = wallet.history
    ident = identity("wallet-long")
    # A device restored from its keys learns the whole chain, then signs the next block.
    (tmp_path / "r").mkdir()
    restored = Wallet(
        wallet.account, wallet.key, ident.sign, STORES[kind](tmp_path / "r"), restored=True
    )
    with pytest.raises(LocalProtocolError, match="sync"):
        restored.transfer(wallet.account, 1)
    restored.synced(chain)
    assert restored.head == wallet.head and restored.length == len(chain)
    assert [c.block for c in restored.recent] == [c.block for c in wallet.recent]
    assert _sequences(restored.store.chain(0, len(chain))) == list(range(len(chain)))
    # A wallet that knows a prefix adopts the rest, from the full chain or from its part
    # after the head (what ``sync_chain(start=head)`` returns).
    behind = Wallet(wallet.account, wallet.key, ident.sign, MemoryWalletStore())
    behind.synced(chain[:10])
    behind.synced(chain)
    assert behind.head == wallet.head
    partial = Wallet(wallet.account, wallet.key, ident.sign, MemoryWalletStore())
    partial.synced(chain[:10])
    partial.synced(chain[10:])
    assert partial.head == wallet.head and partial.history == chain
    # A part that starts beyond the head leaves a gap: refused, the wallet unchanged.
    gapped = Wallet(wallet.account, wallet.key, ident.sign, MemoryWalletStore())
    gapped.synced(chain[:10])
    with pytest.raises(LocalProtocolError, match="continue"):
        gapped.synced(chain[11:])
    assert gapped.length == 10
    # The synced wallet signs a block the validators certify (sequence, previous hash,
    # balance and key right although it holds only the tail).
    certificate = world.commit(restored, restored.transfer(key_of(identity("payee")), 7))
    assert certificate.decoded().sequence == len(chain)
    assert restored.balance == wallet.balance - 7


def test_reopened_sqlite_wallet_reads_only_the_tail(tmp_path: Path) -> None:
    world = World()
    path = tmp_path / "wallet.db"
    wallet = _long_wallet(world, SqliteWalletStore(path))
    block = wallet.transfer(key_of(identity("payee")), 5)  # pending at the restart
    ident = identity("wallet-long")
    store = SqliteWalletStore(path)
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    reopened = Wallet(wallet.account, wallet.key, ident.sign, store)
    store.db.set_trace_callback(None)
    # The restart asked SQLite for the tail only (LIMIT), never the whole chain.
    reads = [s for s in statements if "FROM chain" in s]
    assert reads and all("LIMIT" in s for s in reads), statements
    assert reopened.head == wallet.head and reopened.balance == wallet.balance
    assert reopened.pending == block and reopened.length == 2 + TRANSFERS
    assert [c.block for c in reopened.recent] == [c.block for c in wallet.recent]
    # The pending block is resent as is and certified; then the next one is signed right.
    world.commit(reopened, block)
    certificate = world.commit(reopened, reopened.transfer(key_of(identity("payee")), 6))
    assert certificate.decoded().sequence == 2 + TRANSFERS + 1
    assert reopened.balance == wallet.balance - 5 - 6
    again = Wallet(wallet.account, wallet.key, ident.sign, SqliteWalletStore(path))
    assert again.head == reopened.head and again.pending is None
    assert _sequences(again.recent)[-1] == again.length - 1 and len(again.recent) == TAIL


def test_memory_store_with_keep_refuses_what_it_dropped() -> None:
    world = World()
    store = MemoryWalletStore(keep=8)
    wallet = _long_wallet(world, store)
    length = wallet.length
    assert _sequences(store.chain(length - 8, 100)) == list(range(length - 8, length))
    with pytest.raises(ChainNotKept):
        store.chain(length - 9, 2)
    with pytest.raises(ChainNotKept):
        _ = wallet.history
    # The wallet's own tail is independent of what the store keeps: it still signs.
    assert len(wallet.recent) == TAIL
    world.commit(wallet, wallet.transfer(key_of(identity("payee")), 1))
    with pytest.raises(ValueError, match="keep"):
        MemoryWalletStore(keep=0)


def test_cli_history_prints_the_whole_chain_page_by_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World()
    path = tmp_path / "wallet.db"
    wallet = _long_wallet(world, SqliteWalletStore(path))
    ident = identity("wallet-long")
    reopened = Wallet(wallet.account, wallet.key, ident.sign, SqliteWalletStore(path))
    capsys.readouterr()
    print_history(reopened, page=7)  # 50 certificates: 8 pages, the last one short
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [entry["sequence"] for entry in lines] == list(range(2 + TRANSFERS))
    assert [entry["kind"] for entry in lines[:3]] == [0, 3, 2]  # open, receive, transfer
    assert [entry["amount"] for entry in lines[2:]] == list(range(1, TRANSFERS + 1))
    assert lines[-1]["balance"] == wallet.balance
    # A store that lost rows is reported, not printed short.
    sqlite3.connect(path).execute("DELETE FROM chain WHERE sequence = 30").connection.commit()
    with pytest.raises(BankCliError, match="sequence 30"):
        print_history(reopened, page=7)
