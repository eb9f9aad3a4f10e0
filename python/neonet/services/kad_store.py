"""SQLite persistence of a DHT node: stored records, provider records, own publications.

One database file per node (``":memory:"`` for a throw-away node), WAL journal.
Tables: ``records`` (values this node stores for the DHT, with their expiry),
``providers`` (provider records it stores), ``published`` (values and names this
node put itself, to republish after a restart), ``providing`` (keys it provides) and
``identity`` (its own private key, so a restarted node keeps its peer ID and the
names bound to it). Times are Unix seconds passed in by the caller. Every table is
bounded: ``put_record`` and ``add_provider`` refuse with ``LimitExceededError``.

The calls are small, indexed statements on a local file; the trio layer runs them
directly (each takes microseconds to a millisecond).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from neonet.core.errors import LimitExceededError
from neonet.core.keys import Ed25519Identity

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    key BLOB PRIMARY KEY, value BLOB NOT NULL, received REAL NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS providers (
    key BLOB NOT NULL, peer BLOB NOT NULL, addrs BLOB NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (key, peer));
CREATE INDEX IF NOT EXISTS providers_expiry ON providers (expires);
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires);
CREATE TABLE IF NOT EXISTS published (key BLOB PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS providing (key BLOB PRIMARY KEY);
CREATE TABLE IF NOT EXISTS identity (id INTEGER PRIMARY KEY CHECK (id = 1), private BLOB NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class StoreLimits:
    max_records: int = 10_000
    max_provider_keys: int = 10_000
    max_providers_per_key: int = 20
    max_published: int = 1_000


@dataclass(frozen=True, slots=True)
class StoredProvider:
    peer_id: bytes
    addrs: tuple[bytes, ...]
    expires: float


def _pack_addrs(addrs: tuple[bytes, ...]) -> bytes:
    out = bytearray()
    for address in addrs:
        out += len(address).to_bytes(2, "big") + address
    return bytes(out)


def _unpack_addrs(data: bytes) -> tuple[bytes, ...]:
    addrs: list[bytes] = []
    offset = 0
    while offset + 2 <= len(data):
        length = int.from_bytes(data[offset : offset + 2], "big")
        addrs.append(data[offset + 2 : offset + 2 + length])
        offset += 2 + length
    return tuple(addrs)


class KadStore:
    """The node's DHT database (see the module docstring)."""

    def __init__(self, path: str | Path = ":memory:", limits: StoreLimits | None = None) -> None:
        self.path = str(path)
        self.limits = limits or StoreLimits()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # --- identity -----------------------------------------------------------------
    def load_or_create_identity(self) -> Ed25519Identity:
        """This node's identity: the stored one, or a new one that is stored now."""
        row = self._db.execute("SELECT private FROM identity WHERE id = 1").fetchone()
        if row is not None:
            return Ed25519Identity.from_private_protobuf(bytes(row[0]))
        identity = Ed25519Identity.generate()
        self.save_identity(identity)
        return identity

    def save_identity(self, identity: Ed25519Identity) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO identity (id, private) VALUES (1, ?)",
            (identity.to_private_protobuf(),),
        )

    # --- records ------------------------------------------------------------------
    def get_record(self, key: bytes, now: float) -> bytes | None:
        row = self._db.execute(
            "SELECT value FROM records WHERE key = ? AND expires > ?", (key, now)
        ).fetchone()
        return bytes(row[0]) if row is not None else None

    def put_record(self, key: bytes, value: bytes, now: float, expires: float) -> None:
        """Store (or replace) a record; ``LimitExceededError`` when the table is full."""
        exists = self._db.execute("SELECT 1 FROM records WHERE key = ?", (key,)).fetchone()
        if exists is None and self.record_count(now) >= self.limits.max_records:
            raise LimitExceededError(f"record store holds {self.limits.max_records} records")
        self._db.execute(
            "INSERT OR REPLACE INTO records (key, value, received, expires) VALUES (?, ?, ?, ?)",
            (key, value, now, expires),
        )

    def record_count(self, now: float) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM records WHERE expires > ?", (now,)).fetchone()
        return int(row[0])

    def records(self, now: float) -> list[tuple[bytes, bytes]]:
        rows = self._db.execute(
            "SELECT key, value FROM records WHERE expires > ? ORDER BY key", (now,)
        ).fetchall()
        return [(bytes(key), bytes(value)) for key, value in rows]

    # --- providers ----------------------------------------------------------------
    def add_provider(
        self, key: bytes, peer_id: bytes, addrs: tuple[bytes, ...], now: float, expires: float
    ) -> None:
        """Record ``peer_id`` as a provider of ``key``; refreshes a known one."""
        known = self._db.execute(
            "SELECT 1 FROM providers WHERE key = ? AND peer = ?", (key, peer_id)
        ).fetchone()
        if known is None:
            count = self._db.execute(
                "SELECT COUNT(*) FROM providers WHERE key = ? AND expires > ?", (key, now)
            ).fetchone()[0]
            if count >= self.limits.max_providers_per_key:
                raise LimitExceededError(
                    f"key already has {self.limits.max_providers_per_key} providers"
                )
            if count == 0:
                keys = self._db.execute(
                    "SELECT COUNT(DISTINCT key) FROM providers WHERE expires > ?", (now,)
                ).fetchone()[0]
                if keys >= self.limits.max_provider_keys:
                    raise LimitExceededError(
                        f"provider store holds {self.limits.max_provider_keys} keys"
                    )
        self._db.execute(
            "INSERT OR REPLACE INTO providers (key, peer, addrs, expires) VALUES (?, ?, ?, ?)",
            (key, peer_id, _pack_addrs(addrs), expires),
        )

    def providers(self, key: bytes, now: float) -> list[StoredProvider]:
        rows = self._db.execute(
            "SELECT peer, addrs, expires FROM providers WHERE key = ? AND expires > ?"
            " ORDER BY expires DESC",
            (key, now),
        ).fetchall()
        return [StoredProvider(bytes(p), _unpack_addrs(bytes(a)), e) for p, a, e in rows]

    # --- expiry -------------------------------------------------------------------
    def expire(self, now: float) -> int:
        """Delete expired records and providers; return how many rows went."""
        gone = self._db.execute("DELETE FROM records WHERE expires <= ?", (now,)).rowcount
        gone += self._db.execute("DELETE FROM providers WHERE expires <= ?", (now,)).rowcount
        return int(gone)

    # --- what this node publishes ---------------------------------------------------
    def set_published(self, key: bytes, value: bytes) -> None:
        exists = self._db.execute("SELECT 1 FROM published WHERE key = ?", (key,)).fetchone()
        if exists is None:
            count = self._db.execute("SELECT COUNT(*) FROM published").fetchone()[0]
            if count >= self.limits.max_published:
                raise LimitExceededError(f"node already publishes {count} values")
        self._db.execute(
            "INSERT OR REPLACE INTO published (key, value) VALUES (?, ?)", (key, value)
        )

    def published(self) -> list[tuple[bytes, bytes]]:
        rows = self._db.execute("SELECT key, value FROM published ORDER BY key").fetchall()
        return [(bytes(key), bytes(value)) for key, value in rows]

    def published_value(self, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT value FROM published WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row is not None else None

    def add_providing(self, key: bytes) -> None:
        exists = self._db.execute("SELECT 1 FROM providing WHERE key = ?", (key,)).fetchone()
        if exists is None:
            count = self._db.execute("SELECT COUNT(*) FROM providing").fetchone()[0]
            if count >= self.limits.max_published:
                raise LimitExceededError(f"node already provides {count} keys")
        self._db.execute("INSERT OR IGNORE INTO providing (key) VALUES (?)", (key,))

    def providing(self) -> list[bytes]:
        return [bytes(row[0]) for row in self._db.execute("SELECT key FROM providing ORDER BY key")]
