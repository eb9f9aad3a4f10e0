"""The DHT's SQLite store: persistence across reopening, limits and expiry."""

from __future__ import annotations

from pathlib import Path

import pytest

from neonet.core.errors import LimitExceededError
from neonet.core.peer_id import PeerId
from neonet.services.kad_store import KadStore, StoreLimits


def test_everything_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "kad.sqlite"
    store = KadStore(path)
    identity = store.load_or_create_identity()
    store.put_record(b"/pk/a", b"value", now=10.0, expires=100.0)
    store.add_provider(b"cid", b"peer", (b"\x04\x7f\x00\x00\x01", b""), now=10.0, expires=100.0)
    store.set_published(b"/neonet-name/alice", b"record")
    store.add_providing(b"cid")
    store.close()

    again = KadStore(path)
    assert PeerId.from_public_key(
        again.load_or_create_identity().public_key
    ) == PeerId.from_public_key(identity.public_key)
    assert again.get_record(b"/pk/a", now=20.0) == b"value"
    [provider] = again.providers(b"cid", now=20.0)
    assert provider.peer_id == b"peer" and provider.addrs == (b"\x04\x7f\x00\x00\x01", b"")
    assert again.published() == [(b"/neonet-name/alice", b"record")]
    assert again.providing() == [b"cid"]
    assert again.path == str(path)
    journal = again._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"
    again.close()


def test_expired_entries_are_not_served_and_get_deleted() -> None:
    store = KadStore()
    store.put_record(b"/k/1", b"v", now=0.0, expires=10.0)
    store.add_provider(b"cid", b"p", (), now=0.0, expires=10.0)
    assert store.get_record(b"/k/1", now=9.0) == b"v"
    assert store.get_record(b"/k/1", now=10.0) is None
    assert store.providers(b"cid", now=10.0) == []
    assert store.expire(now=10.0) == 2
    assert store.record_count(now=0.0) == 0


def test_limits_refuse_new_entries_but_allow_updates() -> None:
    store = KadStore(
        limits=StoreLimits(max_records=2, max_provider_keys=1, max_providers_per_key=2)
    )
    store.put_record(b"/k/1", b"v", now=0.0, expires=10.0)
    store.put_record(b"/k/2", b"v", now=0.0, expires=10.0)
    with pytest.raises(LimitExceededError, match="2 records"):
        store.put_record(b"/k/3", b"v", now=0.0, expires=10.0)
    store.put_record(b"/k/1", b"newer", now=1.0, expires=11.0)  # replacing is fine
    assert store.get_record(b"/k/1", now=2.0) == b"newer"
    store.add_provider(b"cid", b"p1", (), now=0.0, expires=10.0)
    store.add_provider(b"cid", b"p2", (), now=0.0, expires=10.0)
    with pytest.raises(LimitExceededError, match="providers"):
        store.add_provider(b"cid", b"p3", (), now=0.0, expires=10.0)
    store.add_provider(b"cid", b"p1", (), now=5.0, expires=15.0)  # refresh is fine
    with pytest.raises(LimitExceededError, match="keys"):
        store.add_provider(b"cid2", b"p1", (), now=0.0, expires=10.0)
