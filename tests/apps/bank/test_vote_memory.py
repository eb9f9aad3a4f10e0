"""A validator's memory stays bounded as its accounts' chains grow (session 6, issue 7).

The deferred vote store keeps in memory only the votes above each account's certified
head (and those not yet on disk); the database answers for the rest, so the one-vote-per-
slot rule holds for settled slots too, also across a restart.
"""

from __future__ import annotations

from pathlib import Path

from neonet.apps.bank.store import SqliteVoteStore
from neonet.proto.bank.validator import Refusal, Validator, Vote
from neonet.proto.bank.wallet import Wallet
from tests.proto.bank.world import World


def _deferred_world(path: Path) -> tuple[World, SqliteVoteStore, Validator]:
    world = World()
    store = SqliteVoteStore(path, deferred=True)
    validator = Validator(
        world.committee, 0, world.validator_ids[0].sign, world.mint_account, store
    )
    world.validators[0] = validator
    return world, store, validator


def test_store_and_validator_memory_stay_bounded(tmp_path: Path) -> None:
    world, store, validator = _deferred_world(tmp_path / "votes.db")
    payer = world.funded("payer", 10_000)
    payee = world.wallet("payee")
    world.commit(payee, payee.open())
    sizes = []
    for _ in range(40):
        world.commit(payer, payer.transfer(payee.account, 1))
        store.flush()  # the group commit wrote the batch
        sizes.append((len(store._votes), len(validator._voted)))
    assert validator.ledger.head(payer.account).sequence == 41
    # Each vote leaves memory once its slot is certified and on disk (one certified before
    # its batch was written leaves with that batch, session 7): no growth with the chain.
    assert max(votes for votes, _ in sizes) == 0, sizes
    assert max(voted for _, voted in sizes) == 0, sizes  # certificate came: entry dropped
    stored = validator.ledger.accounts[payer.account].certificates
    assert all(certificate.decoded_block is None for certificate in stored)
    # The settled slots still hold their votes, now answered from the database.
    first = stored[5].block
    assert store.voted(payer.account, 5) == first
    assert store.record(payer.account, 5, b"another block", None) == first
    assert isinstance(validator.handle_sign_request(first), Vote)  # a certified re-vote


def test_a_settled_slot_keeps_refusing_the_block_that_beat_its_vote(tmp_path: Path) -> None:
    path = tmp_path / "votes.db"
    world, store, validator = _deferred_world(path)
    world.commit(world.mint, world.mint.open())
    mine = world.mint.issue(10)
    assert isinstance(validator.handle_sign_request(mine), Vote)  # validator 0 votes X
    twin = Wallet(
        world.mint_account, world.mint_account, world.mint_id.sign, world.wallet("t").store
    )
    twin.synced(list(world.mint.history))
    theirs = twin.issue(11)
    certificate = world.certify(theirs, validators=[1, 2, 3])  # Y wins without it
    assert certificate is not None
    store.flush()
    validator.handle_certificate(certificate)
    assert store._votes == {}  # settled: the vote for X lives on disk only
    answer = validator.handle_sign_request(theirs)  # Y re-sent: no second vote here
    assert isinstance(answer, Refusal) and "another block" in answer.reason
    # Restart: an empty index with the floor at the last vote; the database decides.
    store.close()
    reopened = SqliteVoteStore(path, deferred=True)
    assert reopened._votes == {}
    assert reopened.record(world.mint_account, 1, theirs, None) == mine
    reopened.close()


def test_a_vote_queued_below_the_floor_is_decided_in_memory_until_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "votes.db"
    account = b"a" * 32
    store = SqliteVoteStore(path, deferred=True)
    assert store.record(account, 3, b"block-3", None) is None
    store.flush()
    store.close()
    store = SqliteVoteStore(path, deferred=True)  # floor 3, empty index
    assert store.record(account, 1, b"block-1", None) is None  # below the floor, queued
    assert store.voted(account, 1) == b"block-1"
    assert store.record(account, 1, b"other", None) == b"block-1"  # from memory
    store.flush()
    assert store._votes == {}  # written: dropped
    assert store.record(account, 1, b"other", None) == b"block-1"  # from the database
    assert store.record(account, 3, b"other", None) == b"block-3"
    assert store.record(account, 4, b"block-4", None) is None  # above the floor
    store.settle(account, 4)
    assert (account, 4) in store._votes  # not on disk yet: kept
    store.flush()
    store.settle(account, 4)
    assert store._votes == {}
    assert store.voted(account, 4) == b"block-4"
    store.close()
