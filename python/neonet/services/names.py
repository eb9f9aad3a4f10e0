"""Claim, resolve and rotate NeoNet names over the Kademlia DHT.

The records and their rules are in ``neonet.proto.names``; this module signs them
with the caller's identity and puts or gets them through a ``KadDHT``. A claim is
remembered in the DHT node's store (``published``), so it is republished periodically
and after a restart until it expires.
"""

from __future__ import annotations

from neonet.core.errors import DecodeError
from neonet.core.keys import Ed25519Identity
from neonet.proto.kad_records import InvalidRecordError
from neonet.proto.names import (
    MAX_ROTATIONS,
    NameRecord,
    Rotation,
    decode_name_record,
    name_key,
    sign_name_record,
    sign_rotation,
)
from neonet.services.kad import KadDHT

DEFAULT_NAME_TTL = 7 * 24 * 3600  # seconds a claim stays valid without renewal
RESOLVE_QUORUM = 3  # valid answers compared before a resolve settles


class NameClaimError(Exception):
    """A claim or rotation that the DHT would refuse (the message says why)."""


async def _current(dht: KadDHT, key: bytes) -> NameRecord | None:
    own = dht.store.published_value(key)
    found = await dht.get_value(key, quorum=RESOLVE_QUORUM)
    candidates = [value for value in (own, found) if value is not None]
    if not candidates:
        return None
    return decode_name_record(candidates[dht.validator.select(key, candidates)])


async def claim_name(
    dht: KadDHT, name: str, identity: Ed25519Identity, *, ttl: int = DEFAULT_NAME_TTL
) -> tuple[NameRecord, int]:
    """Bind ``name`` to ``identity`` (a new claim or a renewal); return it and how many
    peers stored it. ``NameClaimError`` if the name belongs to another key."""
    key = name_key(name)
    current = await _current(dht, key)
    seq = 1
    rotations: tuple[Rotation, ...] = ()
    if current is not None:
        if current.public_key != identity.public_key.to_protobuf():
            raise NameClaimError(f"{name!r} is claimed by {current.peer_id}")
        seq = current.seq + 1
        rotations = current.rotations
    record = sign_name_record(
        name,
        identity,
        seq=seq,
        expires=int(dht.wall_clock()) + ttl,
        rotations=rotations,
    )
    return record, await _publish(dht, key, record)


async def _publish(dht: KadDHT, key: bytes, record: NameRecord) -> int:
    try:
        return await dht.put_value(key, record.encode())
    except InvalidRecordError as exc:
        raise NameClaimError(str(exc)) from None


async def resolve_name(dht: KadDHT, name: str) -> NameRecord | None:
    """The best valid record for ``name`` in the DHT, or None."""
    key = name_key(name)
    value = await dht.get_value(key, quorum=RESOLVE_QUORUM)
    if value is None:
        return None
    try:
        return decode_name_record(value)
    except DecodeError:
        return None  # get_value validated it; this cannot happen for a known namespace


async def rotate_name(
    dht: KadDHT,
    name: str,
    current_identity: Ed25519Identity,
    new_identity: Ed25519Identity,
    *,
    ttl: int = DEFAULT_NAME_TTL,
) -> tuple[NameRecord, int]:
    """Hand ``name`` from ``current_identity``'s key to ``new_identity``'s key.

    The new record carries a rotation link signed by the current key, so nodes that
    hold the old record accept it. ``NameClaimError`` if the current key does not hold
    the name.
    """
    key = name_key(name)
    current = await _current(dht, key)
    if current is None:
        raise NameClaimError(f"{name!r} is not claimed; claim it first")
    if current.public_key != current_identity.public_key.to_protobuf():
        raise NameClaimError(f"{name!r} is held by {current.peer_id}, not by the current key")
    link = sign_rotation(name, current_identity, new_identity.public_key)
    rotations = (*current.rotations, link)[-MAX_ROTATIONS:]
    record = sign_name_record(
        name,
        new_identity,
        seq=current.seq + 1,
        expires=int(dht.wall_clock()) + ttl,
        rotations=rotations,
    )
    return record, await _publish(dht, key, record)
