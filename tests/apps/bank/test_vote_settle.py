"""When a deferred vote store may forget a vote, and what it must still answer (issue 7).

Session 7 follow-ups of the session-6 memory work (``SqliteVoteStore.settle``): settling
while a batch is being written or after a batch failed, a restart whose last vote is
above the certified head, a replaced vote at or below the floor, a re-vote written after
its slot was certified, and accounts advanced from the ledger's parked queue. Each slot
keeps one vote, whether the answer comes from memory or from the database. Also: the
validator's cached head of a vote (``_voted``) leaves on a CONFLICT outcome.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from neonet.apps.bank.store import SqliteVoteStore, StoreFailedError
from neonet.proto.bank.messages import Certificate, block_hash, vote_message
from neonet.proto.bank.state import Applied
from neonet.proto.bank.validator import Refusal, Validator, Vote, assemble_certificate
from neonet.proto.bank.wallet import Wallet
from tests.proto.bank.world import World

ACCOUNT = b"a" * 32
PURSE = b"p" * 32


def _validator(world: World, store: SqliteVoteStore) -> Validator:
    """Validator 0 on ``store``, which also archives its certificates (as ``neonet bank
    validator`` runs it), keeping one per account in memory."""
    validator = Validator(
        world.committee, 0, world.validator_ids[0].sign, world.mint_account, store, archive=store
    )
    validator.ledger.tail = 1
    return validator


def _deferred_world(path: Path) -> tuple[World, SqliteVoteStore, Validator]:
    world = World()
    store = SqliteVoteStore(path, deferred=True)
    validator = world.validators[0] = _validator(world, store)
    return world, store, validator


def _count(store: SqliteVoteStore, account: bytes, sequence: int) -> int:
    row = store.db.execute(
        "SELECT COUNT(*) FROM votes WHERE account = ? AND sequence = ?", (account, sequence)
    ).fetchone()
    return int(row[0])


def test_settle_while_a_batch_is_being_written_keeps_its_votes(tmp_path: Path) -> None:
    store = SqliteVoteStore(tmp_path / "votes.db", deferred=True)
    assert store.record(ACCOUNT, 0, b"block-0", None) is None
    store.flush()
    store.settle(ACCOUNT, 0)
    assert store._votes == {}
    assert store.record(ACCOUNT, 1, b"block-1", None) is None
    number, rows = store.take_batch()  # the group commit is writing it (another thread)
    assert store.record(ACCOUNT, 2, b"block-2", None) is None  # queued for the next batch
    store.settle(ACCOUNT, 2)  # both slots certified before either vote is on disk
    # Neither vote may leave memory: the database does not have them yet.
    assert store._votes == {(ACCOUNT, 1): b"block-1", (ACCOUNT, 2): b"block-2"}
    assert store.votes() == {(ACCOUNT, 0): b"block-0"}
    store.begin_request()
    assert store.voted(ACCOUNT, 1) == b"block-1"
    assert store.needed_batch() == number  # a resend's answer waits for that batch
    assert store.record(ACCOUNT, 1, b"other", None) == b"block-1"
    assert store.record(ACCOUNT, 2, b"other", None) == b"block-2"
    store.write_batch(rows)
    assert store._votes[(ACCOUNT, 1)] == b"block-1"  # on disk, but not told yet
    store.batch_written(number)
    assert store._votes == {(ACCOUNT, 2): b"block-2"}  # slot 2's batch is still to come
    store.begin_request()
    assert store.voted(ACCOUNT, 1) == b"block-1"  # now from the database
    assert store.needed_batch() is None
    assert store.record(ACCOUNT, 1, b"other", None) == b"block-1"
    store.flush()
    assert store._votes == {} and store._late == set()
    assert store.record(ACCOUNT, 2, b"other", None) == b"block-2"
    assert store.votes() == {(ACCOUNT, i): f"block-{i}".encode() for i in range(3)}
    store.close()


def test_after_a_failed_batch_the_store_answers_nothing(tmp_path: Path) -> None:
    path = tmp_path / "votes.db"
    store = SqliteVoteStore(path, deferred=True)
    assert store.record(ACCOUNT, 0, b"block-0", None) is None
    store.flush()
    assert store.record(ACCOUNT, 1, b"block-1", (PURSE, 0)) is None
    assert store._writer is not None
    store._writer.close()  # the write fails (as a full or lost disk would)
    with pytest.raises(sqlite3.ProgrammingError):
        store.flush()
    assert store.failed is not None
    store.settle(ACCOUNT, 1)  # the ledger goes on applying certificates: no error
    calls: list[Callable[[], object]] = [
        lambda: store.voted(ACCOUNT, 1),
        lambda: store.record(ACCOUNT, 1, b"other", None),
        lambda: store.record(ACCOUNT, 2, b"block-2", None),
        lambda: store.replace(ACCOUNT, 1, b"other", None),
        lambda: store.purse_locks(PURSE),
        store.begin_request,
        store.take_batch,
    ]
    for call in calls:
        with pytest.raises(StoreFailedError):
            call()
    assert store.votes() == {(ACCOUNT, 0): b"block-0"}  # the failed vote is on no disk
    store.close()
    # Its signature never left (the service waits for the batch), so the slot is free.
    reopened = SqliteVoteStore(path, deferred=True)
    assert reopened._floor == {ACCOUNT: 0}
    assert reopened.record(ACCOUNT, 1, b"other", (PURSE, 0)) is None
    assert reopened.record(ACCOUNT, 0, b"other", None) == b"block-0"
    reopened.close()


def test_a_validator_whose_store_failed_applies_certificates_but_never_signs(
    tmp_path: Path,
) -> None:
    world, store, validator = _deferred_world(tmp_path / "votes.db")
    world.commit(world.mint, world.mint.open())
    store.flush()
    issue = world.mint.issue(10)
    assert isinstance(validator.handle_sign_request(issue), Vote)
    assert store._writer is not None
    store._writer.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.flush()
    certificate = world.certify(issue, validators=[1, 2, 3])
    assert certificate is not None
    assert validator.handle_certificate(certificate) is Applied.APPLIED  # settle is quiet
    world.mint.certified(certificate)
    with pytest.raises(StoreFailedError):
        validator.handle_sign_request(world.mint.issue(5))
    with pytest.raises(StoreFailedError):
        validator.handle_sign_request(issue)  # even a re-vote of the certified block
    store.close()


def _history(*wallets: Wallet) -> list[Certificate]:
    return [certificate for wallet in wallets for certificate in wallet.history]


def test_a_restart_with_the_last_vote_above_the_certified_head(tmp_path: Path) -> None:
    path = tmp_path / "votes.db"
    world, store, validator = _deferred_world(path)
    payer = world.funded("payer", 100)
    payee = world.wallet("payee")
    world.commit(payee, payee.open())
    pending = payer.transfer(payee.account, 1)
    assert isinstance(validator.handle_sign_request(pending), Vote)  # no certificate yet
    store.flush()
    store.close()
    # Restart as ``neonet bank validator`` does: reopen, replay the certificates.
    reopened = SqliteVoteStore(path, deferred=True)
    restarted = _validator(world, reopened)
    replayed = list(reopened.iter_certificates())
    assert len(replayed) == len(_history(world.mint, payer, payee))
    for certificate in replayed:
        assert restarted.handle_certificate(certificate) is Applied.APPLIED
    assert not reopened.dirty  # replayed, not archived again
    head = restarted.ledger.head(payer.account)
    assert head is not None and head.sequence == len(payer.history) - 1
    assert reopened._floor[payer.account] == head.sequence + 1  # the vote, above the head
    assert reopened._votes == {}
    # The same block is voted for again, from the database (nothing new to write).
    assert isinstance(restarted.handle_sign_request(pending), Vote)
    assert not reopened.dirty
    # Another block for that slot is refused: the payer signed two, a double spend.
    twin = world.wallet("payer")
    twin.synced(list(payer.history))
    other = twin.transfer(payee.account, 2)
    answer = restarted.handle_sign_request(other)
    assert isinstance(answer, Refusal) and answer.proof is not None, answer
    assert payer.account in restarted.ledger.frozen
    assert reopened.votes()[(payer.account, head.sequence + 1)] == pending
    reopened.close()


def test_replace_at_or_below_the_floor_keeps_one_vote_per_slot(tmp_path: Path) -> None:
    path = tmp_path / "votes.db"
    store = SqliteVoteStore(path, deferred=True)
    assert store.record(ACCOUNT, 3, b"redeem", None) is None
    store.flush()
    store.settle(ACCOUNT, 3)  # floor 3, the vote on disk only
    assert store._votes == {}
    assert store.replace(ACCOUNT, 3, b"claim", (PURSE, 0)) is None
    assert store._votes == {(ACCOUNT, 3): b"claim"}  # decided from memory until written
    assert store.voted(ACCOUNT, 3) == b"claim"
    assert store.record(ACCOUNT, 3, b"redeem", None) == b"claim"
    assert store.replace(ACCOUNT, 3, b"other claim", (PURSE, 0)) == b"claim"  # slot held
    assert store.replace(ACCOUNT, 3, b"claim", (PURSE, 0)) is None  # the same, again
    assert len(store._votes) == 1
    store.flush()
    assert store._votes == {} and store._late == set()
    assert _count(store, ACCOUNT, 3) == 1
    assert store.votes() == {(ACCOUNT, 3): b"claim"}
    assert store.voted(ACCOUNT, 3) == b"claim"
    assert store.record(ACCOUNT, 3, b"redeem", None) == b"claim"
    store.close()
    reopened = SqliteVoteStore(path, deferred=True)
    assert reopened.record(ACCOUNT, 3, b"redeem", None) == b"claim"
    assert reopened.purse_locks(PURSE) == {0: b"claim"}
    reopened.close()


def test_a_vote_written_after_its_slot_was_certified_leaves_memory_once_written(
    tmp_path: Path,
) -> None:
    world, store, validator = _deferred_world(tmp_path / "votes.db")
    payer = world.funded("payer", 100)
    payee = world.wallet("payee")
    world.commit(payee, payee.open())
    store.flush()
    settled = len(store._votes)
    # Slot s: this validator's vote is still unwritten when the certificate arrives.
    world.commit(payer, payer.transfer(payee.account, 1))
    # Slot s + 1: certified without this validator, which then votes for it again (a
    # wallet rebuilding the certificate it lost): a vote written after certification.
    late = payer.transfer(payee.account, 2)
    certificate = world.certify(late, validators=[1, 2, 3])
    assert certificate is not None
    world.broadcast(certificate)
    payer.certified(certificate)
    sequence = certificate.decoded().sequence
    assert store.voted(payer.account, sequence) is None
    assert isinstance(validator.handle_sign_request(late), Vote)
    assert store.dirty and store._votes[(payer.account, sequence)] == late
    store.flush()
    # Both written: no vote of the payer's certified slots stays in memory, whose size is
    # back to what it was once the setup was settled.
    assert [key for key in store._votes if key[0] == payer.account] == []
    assert len(store._votes) == settled
    assert store.voted(payer.account, sequence) == late  # from the database
    assert store.record(payer.account, sequence, b"another block", None) == late
    assert settled == 0  # the setup's votes, certified before written, left once written
    store.close()


def test_accounts_applied_from_the_parked_queue_are_settled(tmp_path: Path) -> None:
    world, store, validator = _deferred_world(tmp_path / "votes.db")
    payer = world.funded("payer", 100)
    payee = world.wallet("payee")
    world.commit(payee, payee.open())
    store.flush()
    # A transfer and its receive, certified by the others; validator 0 hears of them
    # late and out of order: the RECEIVE parks until its TRANSFER is applied.
    others = world.validators[1:]
    transfer = world.certify(payer.transfer(payee.account, 5), validators=[1, 2, 3])
    assert transfer is not None
    payer.certified(transfer)
    for other in others:
        assert other.handle_certificate(transfer) is Applied.APPLIED
    paid = transfer.decoded()
    receive_block = payee.receive(paid.account, paid.sequence, paid.hash(), 5)
    receive = world.certify(receive_block, validators=[1, 2, 3])
    assert receive is not None
    payee.certified(receive)
    assert validator.handle_certificate(receive) is Applied.PARKED
    assert validator.handle_certificate(transfer) is Applied.APPLIED  # drains the RECEIVE
    payee_head = validator.ledger.head(payee.account)
    assert payee_head is not None and payee_head.sequence == 1
    assert store._floor[payee.account] == 1  # the parked account is settled too
    assert store._floor[payer.account] == paid.sequence
    # A re-vote at the RECEIVE's slot leaves memory once written (it did not before).
    assert isinstance(validator.handle_sign_request(receive_block), Vote)
    assert store._votes == {(payee.account, 1): receive_block}
    store.flush()
    assert store._votes == {}
    assert store.record(payee.account, 1, b"another block", None) == receive_block
    # And the payee's next block is voted for as usual, above the floor.
    assert isinstance(validator.handle_sign_request(payee.transfer(payer.account, 1)), Vote)
    assert (payee.account, 2) in store._votes
    store.close()


def test_a_conflicting_certificate_drops_the_cached_head_of_its_vote() -> None:
    """``_voted`` (block hash -> head after it) is dropped on CONFLICT: the slot holds
    another certified block for good, so the cached head can never be used again."""
    world = World()
    validator = world.validators[0]
    world.commit(world.mint, world.mint.open())
    mine = world.mint.issue(10)
    assert isinstance(validator.handle_sign_request(mine), Vote)
    assert block_hash(mine) in validator._voted
    twin = Wallet(
        world.mint_account, world.mint_account, world.mint_id.sign, world.wallet("t").store
    )
    twin.synced(list(world.mint.history))
    theirs = world.certify(twin.issue(11), validators=[1, 2, 3])
    assert theirs is not None
    assert validator.handle_certificate(theirs) is Applied.APPLIED
    # More than f validators (1 and 2) also signed ``mine``: a second certificate.
    message = vote_message(world.committee.id(), block_hash(mine))
    votes = [Vote(i, world.validator_ids[i].sign(message)) for i in (0, 1, 2)]
    conflicting = assemble_certificate(mine, votes, world.committee)
    assert conflicting is not None
    assert validator.handle_certificate(conflicting) is Applied.CONFLICT
    assert validator._voted == {}
    assert validator.ledger.conflicts == [(theirs.block, mine)]
