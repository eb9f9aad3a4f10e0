"""The deferred vote store against a model: one vote per slot, whatever the interleaving.

Random sequences of ``record``, ``replace``, ``settle``, batches taken and written (the
group commit, possibly several in flight), ``flush`` and crash/restart (reopen the file,
losing what was not written) on a ``SqliteVoteStore(deferred=True)``. The model is what
the store must answer: the votes given since the last restart plus those on disk. After
every step each slot's answer matches the model; once every batch is written, memory
holds no vote at or below an account's settled head or floor (issue 7, session 7).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from neonet.apps.bank.store import SqliteVoteStore

ACCOUNTS = (b"a" * 32, b"b" * 32)
SEQUENCES = range(6)
BLOCKS = (b"x", b"y", b"z")

accounts = st.sampled_from(ACCOUNTS)
sequences = st.sampled_from(SEQUENCES)
blocks = st.sampled_from(BLOCKS)


class VoteStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        self.path = Path(self._dir.name) / "votes.db"
        self.store = SqliteVoteStore(self.path, deferred=True)
        self.answers: dict[tuple[bytes, int], bytes] = {}  # what the store must say
        self.disk: dict[tuple[bytes, int], bytes] = {}  # what a restart finds
        self.in_flight: list[tuple[int, list[tuple[str, tuple[object, ...]]]]] = []
        self.heads: dict[bytes, int] = {}  # settled heads (they only move up)

    def teardown(self) -> None:
        self.store.close()
        self._dir.cleanup()

    def _written(self, rows: list[tuple[str, tuple[object, ...]]]) -> None:
        for statement, parameters in rows:
            account, sequence, block = parameters
            assert isinstance(account, bytes) and isinstance(sequence, int)
            assert isinstance(block, bytes)
            if statement.startswith("INSERT OR REPLACE"):
                self.disk[(account, sequence)] = block
            else:
                self.disk.setdefault((account, sequence), block)

    @rule(account=accounts, sequence=sequences, block=blocks)
    def record(self, account: bytes, sequence: int, block: bytes) -> None:
        expected = self.answers.get((account, sequence))
        answer = self.store.record(account, sequence, block, None)
        if expected is not None and expected != block:
            assert answer == expected
        else:
            assert answer is None
            self.answers[(account, sequence)] = block

    @rule(account=accounts, sequence=sequences, block=blocks)
    def replace(self, account: bytes, sequence: int, block: bytes) -> None:
        assert self.store.replace(account, sequence, block, None) is None
        self.answers[(account, sequence)] = block

    @rule(account=accounts, step=st.integers(0, 3))
    def settle(self, account: bytes, step: int) -> None:
        head = min(self.heads.get(account, -1) + step, max(SEQUENCES))
        self.heads[account] = head
        self.store.settle(account, head)

    @rule()
    def take_batch(self) -> None:
        self.in_flight.append(self.store.take_batch())

    @precondition(lambda self: bool(self.in_flight))
    @rule()
    def write_oldest(self) -> None:
        number, rows = self.in_flight.pop(0)
        self.store.write_batch(rows)
        self._written(rows)
        self.store.batch_written(number)

    @precondition(lambda self: not self.in_flight)
    @rule()
    def flush(self) -> None:
        rows = list(self.store._queued)
        self.store.flush()
        self._written(rows)

    @rule()
    def restart(self) -> None:
        # A crash: batches in flight and queued rows are lost; their answers never left.
        self.store.close()
        self.store = SqliteVoteStore(self.path, deferred=True)
        self.in_flight = []
        self.answers = dict(self.disk)
        self.heads = {}

    @invariant()
    def every_slot_answers_its_vote(self) -> None:
        for account in ACCOUNTS:
            for sequence in SEQUENCES:
                assert self.store.voted(account, sequence) == self.answers.get(
                    (account, sequence)
                ), (account[:1], sequence)

    @invariant()
    def memory_holds_no_settled_vote_once_all_is_written(self) -> None:
        store = self.store
        if self.in_flight or store.dirty:
            return
        assert store._late == set()
        for account, sequence in store._votes:
            assert sequence > self.heads.get(account, -1), (account[:1], sequence)
            assert sequence > store._floor.get(account, -1), (account[:1], sequence)


VoteStoreMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestVoteStoreModel = VoteStoreMachine.TestCase
