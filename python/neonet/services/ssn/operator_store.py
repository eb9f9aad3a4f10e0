"""The SSN's operator data in SQLite: identity, seed list, operator peer ID, region.

One file per SSN, WAL journal with ``synchronous=FULL``: a write is on disk when the
call returns, so an SSN killed at any moment restarts with the same identity (and so the
same place in the seed list and the federation), the same seed list and operator key,
and the same region. Records of clients are not kept here: clients re-register.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from neonet.core.keys import Ed25519Identity

_SCHEMA = "CREATE TABLE IF NOT EXISTS operator (key TEXT PRIMARY KEY, value BLOB NOT NULL)"


class OperatorStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM operator WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set(self, key: str, value: bytes) -> None:
        self._db.execute(
            "INSERT INTO operator (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def get_text(self, key: str) -> str | None:
        value = self.get(key)
        return None if value is None else value.decode()

    def set_text(self, key: str, value: str) -> None:
        self.set(key, value.encode())

    def load_or_create_identity(self) -> Ed25519Identity:
        stored = self.get("identity")
        if stored is not None:
            return Ed25519Identity.from_private_protobuf(stored)
        identity = Ed25519Identity.generate()
        self.set("identity", identity.to_private_protobuf())
        return identity

    def close(self) -> None:
        self._db.close()
