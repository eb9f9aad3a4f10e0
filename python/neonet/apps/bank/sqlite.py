"""SQLite plumbing of the NeoBankof stores (``neonet.apps.bank.store``): connections in
WAL mode with ``synchronous=FULL``, the store base class with its schema and explicit
transactions, and a thread that checkpoints a database's WAL off the writer's path.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

logger = logging.getLogger("neonet.bank")

_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON")


def connect(path: str | Path, *, any_thread: bool = False) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (explicit transactions), WAL, synchronous=FULL;
    ``any_thread``: the connection may be used from another thread than this one (one
    thread at a time)."""
    connection = sqlite3.connect(
        str(path), isolation_level=None, timeout=30, check_same_thread=not any_thread
    )
    for pragma in _PRAGMAS:
        connection.execute(pragma)
    return connection


class Store:
    """One SQLite file and its connection, its ``_SCHEMA`` made at open."""

    _SCHEMA: tuple[str, ...] = ()

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = connect(path)
        with self._transaction():
            for statement in self._SCHEMA:
                self.db.execute(statement)

    def _transaction(self) -> Transaction:
        return Transaction(self.db)

    def close(self) -> None:
        self.db.close()


class Transaction:
    """``with``: BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on an exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


class Checkpointer:
    """Copies a database's WAL into its file on a thread and connection of its own, so
    that no group commit waits for a checkpoint: the writer's automatic checkpoint (run
    inside the COMMIT that crossed 1,000 WAL pages, then fsync of the database file)
    made every 20th or so commit 15-25 ms instead of 5 ms, the p99 of ``neonet bench
    bank``. A PASSIVE checkpoint copies what is committed, without waiting for the
    writer; the writer restarts the WAL from its start once everything was copied."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path, any_thread=True)
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stopping = False
        self.runs = 0
        self._thread = threading.Thread(
            target=self._run, name="neonet-bank-checkpoint", daemon=True
        )
        self._thread.start()

    def request(self) -> None:
        self._idle.clear()
        self._wake.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the requested checkpoints ran (tests); False on timeout."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the next request tries again
                logger.warning("bank: a WAL checkpoint failed: %r", exc)
            self.runs += 1
            if not self._wake.is_set():
                self._idle.set()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._db.close()
