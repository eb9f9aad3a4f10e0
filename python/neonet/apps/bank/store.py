"""SQLite stores for the NeoBankof engines: validator votes, wallet chain, POS receipts.

Each store is one SQLite file in WAL mode with ``synchronous=FULL``, so a method that
returned has its data on disk: a vote is durable before the validator signs, a wallet's
pending block before the wallet releases it, a receipt's spend before the POS hands the
receipt out (``docs/bank.md``, "Storage"). They implement the store protocols of
``neonet.proto.bank`` (``VoteStore``, ``WalletStore``, ``PosStore``). Each store object
is used from one thread; a group-committing vote store adds a writer connection (its
worker thread) and a WAL checkpoint thread (``neonet.apps.bank.sqlite``).
"""

from __future__ import annotations

import itertools
import operator
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from neonet.apps.bank.sqlite import Checkpointer, Store, connect, logger
from neonet.proto.bank.messages import Certificate, FraudProof, OfflinePayment, Receipt

__all__ = [
    "CHECKPOINT_EVERY",
    "WAL_SAFETY_PAGES",
    "WAL_SIZE_LIMIT",
    "SqlitePosStore",
    "SqliteVoteStore",
    "SqliteWalletStore",
    "StoreFailedError",
    "connect",
]

#: Group commits between two WAL checkpoints of a deferred vote store (each copies what
#: the commits since the last one appended to the WAL into the database file).
CHECKPOINT_EVERY = 16
#: WAL pages at which the writer checkpoints itself (when the checkpoint thread could
#: not restart the WAL: commits back to back), and the size a restarted WAL is cut to.
WAL_SAFETY_PAGES = 10_000
WAL_SIZE_LIMIT = 64 * 1024 * 1024


_Row = tuple[str, tuple[object, ...]]
_IN_LIST = 256  # sequences per slot lookup query (one index search each)


class StoreFailedError(RuntimeError):
    """A deferred vote store whose batch write failed: it answers nothing more."""


class SqliteVoteStore(Store):
    """A validator's votes (one per slot, one per purse slot) and applied certificates.

    Immediate mode (default): each write is its own committed transaction. Deferred mode
    (``deferred=True``, group commit): ``record`` decides against an in-memory index of
    the votes above each account's floor and queues the rows; ``take_batch()`` + ``write_batch()``
    commit the queued rows in one transaction (one fsync), the latter on a separate
    connection so that it may run in a worker thread while the event loop goes on. The
    caller must hold every answer that depends on a row not yet on disk until its batch is
    written (``ValidatorService`` does): a vote is on disk before its signature leaves.
    Rows are numbered by batch: ``begin_request()`` then, after the engine's calls,
    ``needed_batch()`` says which batch the answer depends on, whether its rows were
    queued by this request or by an earlier one whose batch is still being written (a
    resend of the same block). A failed write makes the store refuse every later call
    (``StoreFailedError``): its in-memory index would claim votes that are not on disk.

    The votes kept in memory are the ones not yet settled (purse slots and each account's
    floor are still kept in full): ``settle(account, head)`` (the validator's certified
    head moved, ``BankLedger.on_advanced``) raises the account's floor to ``head`` and
    drops the votes up to it that are on disk. Every vote above the floor is in memory;
    at or below it, memory holds exactly the votes not yet written (``_late``: one queued
    there, e.g. a re-vote of a certified block or a claim replacing a lost redeem, or one
    whose batch was still being written when its slot was settled), each dropped by
    ``batch_written`` once on disk. A lookup at or below the floor reads memory first,
    then the database, which holds every vote dropped from memory. At open, the index is
    empty and each account's floor is its highest vote on disk.
    """

    # Keys start with the sequence: one group commit holds one vote each of many accounts
    # at nearby sequences, which then share index pages; keyed (account, sequence) every
    # account's vote dirtied a page of its own, and the commit wrote (and fsynced) each.
    # Measured with 96 accounts moving in step, as in ``neonet bench bank`` (docs/notes.md,
    # session 7); with accounts at scattered sequences both orders dirty a page per vote.
    # A database made with the other order keeps it: every query names both columns.
    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS votes (account BLOB NOT NULL, sequence INTEGER NOT NULL,"
        " block BLOB NOT NULL, PRIMARY KEY (sequence, account))",
        "CREATE TABLE IF NOT EXISTS purse_slots (purse BLOB NOT NULL, position INTEGER NOT NULL,"
        " block BLOB NOT NULL, PRIMARY KEY (purse, position))",
        # Applied certificates, numbered in the order they were applied (a restart
        # replays them in that order), and found by slot (``archived``).
        "CREATE TABLE IF NOT EXISTS certificates (number INTEGER PRIMARY KEY,"
        " certificate BLOB NOT NULL, account BLOB, sequence INTEGER)",
        "CREATE TABLE IF NOT EXISTS proofs (number INTEGER PRIMARY KEY, proof BLOB NOT NULL)",
    )

    def __init__(self, path: str | Path, *, deferred: bool = False) -> None:
        super().__init__(path)
        self._migrate_certificates()
        self.deferred = deferred
        # The certificate archive (``CertificateArchive``): the next row number, the
        # highest sequence on disk per account at open (a replayed certificate is not
        # archived twice), and the rows queued but not yet written: slot -> (batch, it).
        self._next_number = 1 + (
            self.db.execute("SELECT MAX(number) FROM certificates").fetchone()[0] or 0
        )
        heads = self.db.execute(
            "SELECT account, MAX(sequence) FROM certificates WHERE account IS NOT NULL"
            " GROUP BY account"
        )
        self._archived_at_open = {bytes(account): sequence for account, sequence in heads}
        self._unwritten_certificates: dict[tuple[bytes, int], tuple[int, Certificate]] = {}
        self._queued: list[_Row] = []
        self._votes: dict[tuple[bytes, int], bytes] = {}
        self._slots: dict[tuple[bytes, int], bytes] = {}
        self._by_purse: dict[bytes, dict[int, bytes]] = {}
        # Per account, the sequence at or below which a vote missing from ``_votes`` may be
        # on disk (every vote above it is in ``_votes``); ``_late``: votes queued at or
        # below the floor, dropped from ``_votes`` once written.
        self._floor: dict[bytes, int] = {}
        self._late: set[tuple[bytes, int]] = set()
        self._writer: sqlite3.Connection | None = None
        self._batch_no = 0  # the batch that newly queued rows belong to
        self._unwritten: dict[tuple[str, bytes, int], int] = {}  # index key -> its batch
        self._needed: int | None = None  # the highest batch the current request read
        self.failed: BaseException | None = None
        if deferred:
            heads = self.db.execute("SELECT account, MAX(sequence) FROM votes GROUP BY account")
            self._floor = {bytes(account): sequence for account, sequence in heads.fetchall()}
            rows = self.db.execute("SELECT purse, position, block FROM purse_slots").fetchall()
            self._slots = {(bytes(p), i): bytes(b) for p, i, b in rows}
            for (purse, position), block in self._slots.items():
                self._by_purse.setdefault(purse, {})[position] = block
            self._writer = connect(path, any_thread=True)
            # Checkpoints run on their own thread (``Checkpointer``), started at the
            # first one, so that a commit does not copy the WAL into the database itself;
            # but a checkpoint overlapping the next commit never lets the WAL restart, so
            # back-to-back commits would grow it for good: the writer's own checkpoint
            # stays as a safety net at ``WAL_SAFETY_PAGES``, and a restarted WAL is cut
            # back to ``WAL_SIZE_LIMIT``.
            self._writer.execute(f"PRAGMA wal_autocheckpoint={WAL_SAFETY_PAGES}")
            self._writer.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        self._checkpointer: Checkpointer | None = None
        self._since_checkpoint = 0

    @property
    def dirty(self) -> bool:
        """Whether rows wait to be written (deferred mode)."""
        return bool(self._queued)

    def begin_request(self) -> None:
        """Start tracking the batch the next answer depends on (deferred mode)."""
        self._check_failed()
        self._needed = None

    def needed_batch(self) -> int | None:
        """The batch that must be on disk before the answer to the request begun with
        ``begin_request`` leaves: the latest batch holding a row it queued or read while
        not yet on disk; ``None`` when everything it read is on disk."""
        return self._needed

    def _depend(self, key: tuple[str, bytes, int]) -> None:
        batch = self._unwritten.get(key)
        if batch is not None and (self._needed is None or batch > self._needed):
            self._needed = batch

    def take_batch(self) -> tuple[int, list[_Row]]:
        """The number and rows of the queued batch, handed over to ``write_batch``
        (deferred mode); rows queued afterwards form the next batch."""
        self._check_failed()
        number, rows, self._queued = self._batch_no, self._queued, []
        self._batch_no += 1
        return number, rows

    def batch_written(self, number: int) -> None:
        """Batch ``number`` (and every one before it) is on disk."""
        self._settle_written(number)
        self._since_checkpoint += 1
        if self._since_checkpoint >= CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            try:
                if self._checkpointer is None:
                    self._checkpointer = Checkpointer(self.path)
                self._checkpointer.request()
            except (sqlite3.Error, RuntimeError) as exc:  # the writer's own one remains
                logger.warning("bank: no WAL checkpoint thread: %r", exc)

    def _settle_written(self, number: int) -> None:
        self._unwritten = {k: b for k, b in self._unwritten.items() if b > number}
        if self._unwritten_certificates:  # rebuilt: popping a dict's front is quadratic
            self._unwritten_certificates = {
                slot: queued
                for slot, queued in self._unwritten_certificates.items()
                if queued[0] > number
            }
        if self._late:
            written = {key for key in self._late if ("v", *key) not in self._unwritten}
            for key in written:
                self._votes.pop(key, None)
            self._late -= written

    def settle(self, account: bytes, head: int) -> None:
        """The certified chain of ``account`` reached ``head``: raise its floor to ``head``
        and forget the votes up to it that are on disk (deferred mode; a later lookup reads
        them from the database). A vote there still in a batch not yet written (queued,
        or taken by ``take_batch`` and being written) stays in memory, marked late, and
        leaves once ``batch_written`` says it is on disk: a lookup finds it meanwhile."""
        if not self.deferred or self.failed is not None:
            return  # a failed store answers nothing more: its memory no longer matters
        floor = self._floor.get(account, -1)
        if head <= floor:
            return
        votes, unwritten, late = self._votes, self._unwritten, self._late
        for sequence in range(floor + 1, head + 1):
            key = (account, sequence)
            if key in votes:
                if ("v", account, sequence) in unwritten:
                    late.add(key)
                else:
                    del votes[key]
        self._floor[account] = head

    def _vote_at(self, account: bytes, sequence: int) -> bytes | None:
        """The vote at (account, sequence) in deferred mode: from memory, else from the
        database when the slot is at or below the account's floor."""
        block = self._votes.get((account, sequence))
        if block is not None or sequence > self._floor.get(account, -1):
            return block
        row = self.db.execute(
            "SELECT block FROM votes WHERE account = ? AND sequence = ?", (account, sequence)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _remember(self, account: bytes, sequence: int, block: bytes) -> None:
        self._votes[(account, sequence)] = block
        if sequence <= self._floor.get(account, -1):
            self._late.add((account, sequence))

    def batch_failed(self, error: BaseException) -> None:
        """A batch could not be written: refuse every later call (fail closed)."""
        self.failed = error

    def _check_failed(self) -> None:
        if self.failed is not None:
            raise StoreFailedError("a vote batch could not be written") from self.failed

    def write_batch(self, batch: list[_Row]) -> None:
        """Write rows in one transaction; returns once they are on disk (any one thread)."""
        assert self._writer is not None
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            # Runs of one statement (a vote per item, a certificate per item) go in one
            # ``executemany`` each; the order of the rows is kept.
            for statement, rows in itertools.groupby(batch, key=operator.itemgetter(0)):
                self._writer.executemany(statement, [parameters for _, parameters in rows])
        except BaseException:
            self._writer.execute("ROLLBACK")
            raise
        self._writer.execute("COMMIT")

    def flush(self) -> None:
        """Write the queued rows now, on this thread."""
        if self._queued:
            number, rows = self.take_batch()
            try:
                self.write_batch(rows)
            except BaseException as exc:
                self.batch_failed(exc)
                raise
            self.batch_written(number)

    def _write(
        self,
        statement: str,
        parameters: tuple[object, ...],
        key: tuple[str, bytes, int] | None = None,
    ) -> None:
        if self.deferred:
            self._queued.append((statement, parameters))
            # Whatever this request queued (a vote, a certificate, a proof) is on disk
            # before its answer leaves.
            self._needed = self._batch_no
            if key is not None:
                self._unwritten[key] = self._batch_no
        else:
            with self._transaction() as db:
                db.execute(statement, parameters)

    def record(
        self, account: bytes, sequence: int, block: bytes, slot: tuple[bytes, int] | None
    ) -> bytes | None:
        if not self.deferred:
            return self._record_now(account, sequence, block, slot)
        self._check_failed()
        key = ("v", account, sequence)
        self._depend(key)  # a vote given already may still be on its way to disk
        earlier = self._vote_at(account, sequence)
        if earlier is not None and earlier != block:
            return earlier
        if slot is not None:
            holder = self._take_slot(slot, block)
            if holder is not None:
                return holder
        if earlier is None:
            self._remember(account, sequence, block)
            self._write(
                "INSERT OR IGNORE INTO votes VALUES (?, ?, ?)", (account, sequence, block), key
            )
        return None

    def _record_now(
        self, account: bytes, sequence: int, block: bytes, slot: tuple[bytes, int] | None
    ) -> bytes | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT block FROM votes WHERE account = ? AND sequence = ?", (account, sequence)
            ).fetchone()
            if row is not None and row[0] != block:
                return bytes(row[0])
            if slot is not None:
                held = self._take_slot(slot, block, db)
                if held is not None:
                    return held
            db.execute("INSERT OR IGNORE INTO votes VALUES (?, ?, ?)", (account, sequence, block))
        return None

    def replace(
        self, account: bytes, sequence: int, block: bytes, slot: tuple[bytes, int] | None
    ) -> bytes | None:
        if not self.deferred:
            with self._transaction() as db:
                if slot is not None:
                    held = self._take_slot(slot, block, db)
                    if held is not None:
                        return held
                db.execute(
                    "INSERT OR REPLACE INTO votes VALUES (?, ?, ?)", (account, sequence, block)
                )
            return None
        self._check_failed()
        if slot is not None:
            holder = self._take_slot(slot, block)
            if holder is not None:
                return holder
        self._remember(account, sequence, block)
        self._write(
            "INSERT OR REPLACE INTO votes VALUES (?, ?, ?)",
            (account, sequence, block),
            ("v", account, sequence),
        )
        return None

    def _take_slot(
        self, slot: tuple[bytes, int], block: bytes, db: sqlite3.Connection | None = None
    ) -> bytes | None:
        """Claim purse ``slot`` for ``block``: the other block already holding it, if any;
        else ``None`` once claimed, in ``db``'s open transaction or, deferred, in memory
        and queued for the next batch."""
        if db is not None:
            held = db.execute(
                "SELECT block FROM purse_slots WHERE purse = ? AND position = ?", slot
            ).fetchone()
            if held is not None and held[0] != block:
                return bytes(held[0])
            db.execute("INSERT OR IGNORE INTO purse_slots VALUES (?, ?, ?)", (*slot, block))
            return None
        key = ("s", *slot)
        self._depend(key)
        holder = self._slots.get(slot)
        if holder is not None and holder != block:
            return holder
        if holder is None:
            self._slots[slot] = block
            self._by_purse.setdefault(slot[0], {})[slot[1]] = block
            self._write("INSERT OR IGNORE INTO purse_slots VALUES (?, ?, ?)", (*slot, block), key)
        return None

    def voted(self, account: bytes, sequence: int) -> bytes | None:
        if self.deferred:
            self._check_failed()
            self._depend(("v", account, sequence))
            return self._vote_at(account, sequence)
        row = self.db.execute(
            "SELECT block FROM votes WHERE account = ? AND sequence = ?", (account, sequence)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def purse_locks(self, purse_id: bytes) -> dict[int, bytes]:
        if self.deferred:
            self._check_failed()
            for position in self._by_purse.get(purse_id, {}):
                self._depend(("s", purse_id, position))
            return dict(self._by_purse.get(purse_id, {}))
        rows = self.db.execute(
            "SELECT position, block FROM purse_slots WHERE purse = ?", (purse_id,)
        ).fetchall()
        return {position: bytes(block) for position, block in rows}

    def votes(self) -> dict[tuple[bytes, int], bytes]:
        rows = self.db.execute("SELECT account, sequence, block FROM votes").fetchall()
        return {(bytes(a), s): bytes(b) for a, s, b in rows}

    def _migrate_certificates(self) -> None:
        """Give a database from before the archive its certificates' slots, once."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(certificates)")}
        with self._transaction() as db:
            if "account" not in columns:
                db.execute("ALTER TABLE certificates ADD COLUMN account BLOB")
                db.execute("ALTER TABLE certificates ADD COLUMN sequence INTEGER")
                rows = db.execute("SELECT number, certificate FROM certificates").fetchall()
                for number, data in rows:
                    block = Certificate.decode(bytes(data)).decoded()
                    db.execute(
                        "UPDATE certificates SET account = ?, sequence = ? WHERE number = ?",
                        (block.account, block.sequence, number),
                    )
            indexes = {row[1] for row in db.execute("PRAGMA index_list(certificates)")}
            if "certificates_by_slot" not in indexes:
                # Older stores could hold a slot twice (a replay that parked too much, then
                # a resend): keep its first row, so that the unique index can be made.
                db.execute(
                    "DELETE FROM certificates WHERE number NOT IN"
                    " (SELECT MIN(number) FROM certificates GROUP BY account, sequence)"
                )
            # Sequence first: the certificates of one group commit (many accounts, each at
            # its next sequence) then share a few index pages, where (account, sequence)
            # dirtied one page per account: 17.5 against 12.8 us of SQLite CPU per vote
            # and certificate, 2.8 against 1.9 ms per commit of 96 of each (a 1,500-commit
            # run; docs/notes.md, session 7). Slot lookups are as direct either way.
            db.execute("DROP INDEX IF EXISTS certificates_slot")  # (account, sequence)
            db.execute(
                "CREATE UNIQUE INDEX IF NOT EXISTS certificates_by_slot"
                " ON certificates (sequence, account)"
            )

    def add_certificate(self, certificate: Certificate) -> None:
        """Keep an applied certificate (for a ledger without an archive)."""
        block = certificate.decoded()
        self.archive(block.account, block.sequence, certificate)

    def archive(self, account: bytes, sequence: int, certificate: Certificate) -> None:
        """Keep the applied certificate of (``account``, ``sequence``): written with the
        next batch in deferred mode (readable from memory until then). A certificate on
        disk already (a restart's replay) is not written again."""
        if sequence <= self._archived_at_open.get(account, -1) and self._on_disk(account, sequence):
            return  # a restart's replay (an older database may have holes: they are filled)
        number = self._next_number
        self._next_number += 1
        if self.deferred:
            self._unwritten_certificates[(account, sequence)] = (self._batch_no, certificate)
        self._write(
            "INSERT OR IGNORE INTO certificates VALUES (?, ?, ?, ?)",
            (number, certificate.encode(), account, sequence),
        )

    def _on_disk(self, account: bytes, sequence: int) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM certificates WHERE sequence = ? AND account = ?", (sequence, account)
        ).fetchone()
        return row is not None

    def archived(self, account: bytes, start: int, count: int) -> list[Certificate]:
        """The kept certificates of ``account`` from sequence ``start`` on (at most
        ``count``, consecutive), from disk and from rows not yet written."""
        found: dict[int, bytes] = {}
        for first in range(start, start + count, _IN_LIST):
            sequences = range(first, min(first + _IN_LIST, start + count))
            rows = self.db.execute(
                "SELECT sequence, certificate FROM certificates WHERE account = ?"
                f" AND sequence IN ({','.join('?' * len(sequences))})",
                (account, *sequences),
            )
            found.update((sequence, bytes(data)) for sequence, data in rows)
        unwritten = self._unwritten_certificates
        result = []
        for sequence in range(start, start + count):
            queued = unwritten.get((account, sequence)) if unwritten else None
            if queued is not None:
                result.append(queued[1])
            elif sequence in found:
                result.append(Certificate.decode(found[sequence]))
            else:
                break
        return result

    def certificates(self) -> list[Certificate]:
        """Every kept certificate, in the order they were applied."""
        return list(self.iter_certificates())

    def iter_certificates(self) -> Iterator[Certificate]:
        """Every kept certificate, in the order they were applied, read as it goes (a
        restart replays a long history without holding it all)."""
        cursor = self.db.execute("SELECT certificate FROM certificates ORDER BY number")
        for (data,) in cursor:
            yield Certificate.decode(bytes(data))

    def add_proof(self, proof: FraudProof) -> None:
        self._write("INSERT INTO proofs (proof) VALUES (?)", (proof.encode(),))

    def proofs(self) -> list[FraudProof]:
        rows = self.db.execute("SELECT proof FROM proofs ORDER BY number").fetchall()
        return [FraudProof.decode(bytes(row[0])) for row in rows]

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        if self._writer is not None:
            self._writer.close()
        super().close()


class SqliteWalletStore(Store):
    """A wallet's certified chain, its one pending block, and its purses' next indexes."""

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS chain (sequence INTEGER PRIMARY KEY,"
        " certificate BLOB NOT NULL)",
        "CREATE TABLE IF NOT EXISTS pending (slot INTEGER PRIMARY KEY CHECK (slot = 0),"
        " block BLOB NOT NULL)",
        "CREATE TABLE IF NOT EXISTS purses (purse BLOB PRIMARY KEY, certificate BLOB NOT NULL,"
        " next_index INTEGER NOT NULL, key_seed BLOB NOT NULL)",
    )

    def save_pending(self, block: bytes) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO pending VALUES (0, ?)", (block,))

    def save_certified(self, certificate: Certificate) -> None:
        sequence = certificate.decoded().sequence
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO chain VALUES (?, ?)", (sequence, certificate.encode())
            )
            db.execute("DELETE FROM pending WHERE block = ?", (certificate.block,))

    def load_tail(self, count: int) -> tuple[list[Certificate], bytes | None]:
        """The last ``count`` certificates and the pending block: what a wallet keeps in
        memory, read without the rest of the chain (index range on the primary key)."""
        rows = self.db.execute(
            "SELECT certificate FROM chain ORDER BY sequence DESC LIMIT ?", (max(count, 0),)
        ).fetchall()
        pending = self.db.execute("SELECT block FROM pending").fetchone()
        tail = [Certificate.decode(bytes(row[0])) for row in reversed(rows)]
        return tail, None if pending is None else bytes(pending[0])

    def chain(self, start: int, count: int) -> list[Certificate]:
        """At most ``count`` certificates from sequence ``start`` on, in order."""
        rows = self.db.execute(
            "SELECT certificate FROM chain WHERE sequence >= ? ORDER BY sequence LIMIT ?",
            (start, max(count, 0)),  # (a negative LIMIT is no limit in SQLite)
        ).fetchall()
        return [Certificate.decode(bytes(row[0])) for row in rows]

    def save_purse(self, purse_id: bytes, certificate: Certificate, key_seed: bytes) -> None:
        """A purse and its spending key's seed (the database is the device's own storage)."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO purses VALUES (?, ?, 0, ?)",
                (purse_id, certificate.encode(), key_seed),
            )

    def set_purse_index(self, purse_id: bytes, next_index: int) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE purses SET next_index = MAX(next_index, ?) WHERE purse = ?",
                (next_index, purse_id),
            )

    def purses(self) -> list[tuple[Certificate, int, bytes]]:
        rows = self.db.execute("SELECT certificate, next_index, key_seed FROM purses").fetchall()
        return [(Certificate.decode(bytes(c)), n, bytes(k)) for c, n, k in rows]


class SqlitePosStore(Store):
    """A POS's accepted payments with their receipts, and the fraud proofs it found."""

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS accepted (purse BLOB NOT NULL, position INTEGER NOT NULL,"
        " payment BLOB NOT NULL, receipt BLOB NOT NULL, redeemed INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY (purse, position))",
        "CREATE TABLE IF NOT EXISTS proofs (number INTEGER PRIMARY KEY, proof BLOB NOT NULL)",
    )

    def spend_at(self, purse_id: bytes, index: int) -> tuple[OfflinePayment, Receipt] | None:
        row = self.db.execute(
            "SELECT payment, receipt FROM accepted WHERE purse = ? AND position = ?",
            (purse_id, index),
        ).fetchone()
        if row is None:
            return None
        return OfflinePayment.decode(bytes(row[0])), Receipt.decode(bytes(row[1]))

    def save(self, payment: OfflinePayment, receipt: Receipt) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO accepted (purse, position, payment, receipt) VALUES (?, ?, ?, ?)",
                (
                    payment.spend.purse_id,
                    payment.spend.index,
                    payment.encode(),
                    receipt.encode(),
                ),
            )

    def save_proof(self, proof: FraudProof) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO proofs (proof) VALUES (?)", (proof.encode(),))

    def receipts(self) -> list[tuple[OfflinePayment, Receipt, bool]]:
        rows = self.db.execute(
            "SELECT payment, receipt, redeemed FROM accepted ORDER BY rowid"
        ).fetchall()
        return [
            (OfflinePayment.decode(bytes(p)), Receipt.decode(bytes(r)), bool(d)) for p, r, d in rows
        ]

    def mark_redeemed(self, purse_id: bytes, index: int) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE accepted SET redeemed = 1 WHERE purse = ? AND position = ?",
                (purse_id, index),
            )

    def proofs(self) -> list[FraudProof]:
        rows = self.db.execute("SELECT proof FROM proofs ORDER BY number").fetchall()
        return [FraudProof.decode(bytes(row[0])) for row in rows]
