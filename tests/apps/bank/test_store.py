"""SQLite stores (WAL, synchronous=FULL) and the encrypted keystore of NeoBankof."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from neonet.apps.bank.keystore import load_key, save_key
from neonet.apps.bank.store import SqlitePosStore, SqliteVoteStore, SqliteWalletStore
from neonet.core.keyfile import WrongPassphraseError
from neonet.proto.bank.messages import PursePayload, Receipt, check_certificate
from neonet.proto.bank.pos import PointOfSale
from neonet.proto.bank.validator import Refusal, Validator, Vote, assemble_certificate
from neonet.proto.bank.wallet import PurseWallet, Wallet
from tests.proto.bank.world import World, batch_vote, identity, key_of


def test_stores_use_wal_and_full_sync(tmp_path: Path) -> None:
    for store in (
        SqliteVoteStore(tmp_path / "v.db"),
        SqliteWalletStore(tmp_path / "w.db"),
        SqlitePosStore(tmp_path / "p.db"),
    ):
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        store.close()


def test_vote_store_survives_reopen_and_refuses_a_second_block(tmp_path: Path) -> None:
    world = World()
    world.commit(world.mint, world.mint.open())
    first = world.mint.issue(10)
    path = tmp_path / "votes.db"
    validator = Validator(
        world.committee, 0, world.validator_ids[0].sign, world.mint_account, SqliteVoteStore(path)
    )
    for certificate in world.mint.history:
        validator.handle_certificate(certificate)
    assert isinstance(validator.handle_sign_request(first), Vote)
    # Restart: a new engine on the same file refuses a different block for the slot.
    restarted = Validator(
        world.committee, 0, world.validator_ids[0].sign, world.mint_account, SqliteVoteStore(path)
    )
    for certificate in world.mint.history:
        restarted.handle_certificate(certificate)
    twin = Wallet(
        world.mint_account,
        world.mint_account,
        world.mint_id.sign,
        SqliteWalletStore(tmp_path / "twin.db"),
    )
    twin.synced(list(world.mint.history))
    second = twin.issue(11)
    answer = restarted.handle_sign_request(second)
    assert isinstance(answer, Refusal) and answer.proof is not None
    assert isinstance(restarted.handle_sign_request(first), Refusal)  # frozen now
    assert SqliteVoteStore(path).votes()[(world.mint_account, 1)] == first


def test_wallet_store_keeps_pending_and_chain(tmp_path: Path) -> None:
    world = World()
    path = tmp_path / "wallet.db"
    ident = identity("wallet-dana")
    wallet = Wallet(key_of(ident), key_of(ident), ident.sign, SqliteWalletStore(path))
    world.commit(wallet, wallet.open())
    block = wallet.rotate_key(key_of(ident))
    reopened = Wallet(key_of(ident), key_of(ident), ident.sign, SqliteWalletStore(path))
    assert reopened.pending == block and len(reopened.history) == 1
    world.commit(reopened, block)
    again = Wallet(key_of(ident), key_of(ident), ident.sign, SqliteWalletStore(path))
    assert again.pending is None and again.head == reopened.head


def test_pos_store_and_purse_index_persist(tmp_path: Path) -> None:
    world = World()
    alice = world.funded("alice", 100)
    purse_key = identity("store-purse")
    certificate = world.commit(
        alice, alice.open_purse(100, PursePayload(key_of(purse_key), 50, 2, 1000))
    )
    wallet_store = SqliteWalletStore(tmp_path / "alice.db")
    purse_id = certificate.decoded().hash()
    wallet_store.save_purse(purse_id, certificate, purse_key.seed())
    purse = PurseWallet(
        certificate,
        purse_key.sign,
        persist_index=lambda index: wallet_store.set_purse_index(purse_id, index),
    )
    shop_id = identity("shop")
    shop_store = SqlitePosStore(tmp_path / "shop.db")
    shop = PointOfSale(world.committee, key_of(shop_id), shop_id.sign, shop_store)
    payment = purse.pay(key_of(shop_id), 50, now=1)
    assert SqliteWalletStore(tmp_path / "alice.db").purses()[0][1] == 1
    receipt = shop.accept(payment.encode(), now=2)
    assert isinstance(receipt, Receipt)
    # A restarted POS still knows the slot: a different spend for it is a double spend.
    restarted = PointOfSale(
        world.committee, key_of(shop_id), shop_id.sign, SqlitePosStore(tmp_path / "shop.db")
    )
    copy = PurseWallet(certificate, purse_key.sign)
    refused = restarted.accept(copy.pay(key_of(shop_id), 10, now=3).encode(), now=3)
    assert not isinstance(refused, Receipt) and refused.proof is not None
    assert len(SqlitePosStore(tmp_path / "shop.db").proofs()) == 1
    assert [r for _, r, _ in SqlitePosStore(tmp_path / "shop.db").receipts()] == [receipt]


def test_keystore_round_trip_and_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    ident = identity("keystore")
    save_key(path, ident, "correct horse", scrypt_n=2**10)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path, "correct horse").seed() == ident.seed()
    assert ident.seed().hex() not in path.read_text()
    with pytest.raises(WrongPassphraseError):
        load_key(path, "wrong")
    with pytest.raises(ValueError, match="passphrase"):
        save_key(path, ident, "")


def test_deferred_vote_store_writes_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "votes.db"
    store = SqliteVoteStore(path, deferred=True)
    a, b = b"a" * 32, b"b" * 32
    assert store.record(a, 0, b"block-1", None) is None
    assert store.record(a, 0, b"block-2", None) == b"block-1"  # decided in memory
    assert store.record(b, 0, b"block-3", (b"p" * 32, 0)) is None
    assert store.record(a, 1, b"block-4", (b"p" * 32, 0)) == b"block-3"
    assert store.dirty
    assert SqliteVoteStore(path).votes() == {}  # queued, not yet on disk
    number, rows = store.take_batch()
    store.write_batch(rows)
    store.batch_written(number)
    assert not store.dirty
    reopened = SqliteVoteStore(path, deferred=True)
    assert reopened.votes() == {(a, 0): b"block-1", (b, 0): b"block-3"}
    assert reopened.record(a, 0, b"block-2", None) == b"block-1"  # the index is reloaded


@pytest.mark.parametrize("deferred", [False, True])
def test_vote_store_locks_and_replacement_survive_reopen(tmp_path: Path, deferred: bool) -> None:
    path = tmp_path / "votes.db"
    store = SqliteVoteStore(path, deferred=deferred)
    account, purse = b"a" * 32, b"p" * 32
    assert store.record(account, 3, b"redeem", (purse, 0)) is None
    assert store.record(account, 4, b"refund", (purse, 2**63 - 1)) is None
    assert store.voted(account, 3) == b"redeem" and store.voted(account, 5) is None
    assert store.purse_locks(purse) == {0: b"redeem", 2**63 - 1: b"refund"}
    # A replacement whose own lock is taken by another block changes nothing.
    assert store.replace(account, 3, b"claim", (purse, 0)) == b"redeem"
    assert store.voted(account, 3) == b"redeem"
    assert store.replace(account, 3, b"claim", (b"c" * 32, 0)) is None
    assert store.voted(account, 3) == b"claim"
    if deferred:
        store.flush()  # the group commit a ValidatorService does before answering
    store.close()
    reopened = SqliteVoteStore(path, deferred=deferred)
    assert reopened.voted(account, 3) == b"claim"
    assert reopened.purse_locks(b"c" * 32) == {0: b"claim"}
    assert reopened.purse_locks(purse) == {0: b"redeem", 2**63 - 1: b"refund"}
    assert reopened.record(account, 3, b"other", None) == b"claim"
    reopened.close()


def test_certificates_with_batch_votes_are_stored_and_read_back(tmp_path: Path) -> None:
    world = World()
    alice = world.funded("alice", 50)
    block = alice.transfer(world.mint_account, 5)
    earlier = [c.block for c in alice.recent[-2:]]
    votes = [batch_vote(world.validators[i], block, earlier[: i + 1]) for i in range(3)]
    certificate = assemble_certificate(
        block, [v for v in votes if isinstance(v, Vote)], world.committee
    )
    assert certificate is not None and all(len(vote) == 4 for vote in certificate.votes)
    for deferred in (False, True):
        store = SqliteVoteStore(tmp_path / f"batch-{deferred}.db", deferred=deferred)
        store.add_certificate(certificate)
        store.flush()
        store.close()
        (read,) = SqliteVoteStore(tmp_path / f"batch-{deferred}.db").certificates()
        assert read == certificate and check_certificate(read, world.committee)
