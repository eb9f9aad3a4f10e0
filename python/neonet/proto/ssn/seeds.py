"""The SSN seed list: which SSNs exist, where, in which region, signed by the operator.

A client picks its SSN from this list (lowest round-trip time, own region first) and an
SSN joins the federation through it; the federation admits only SSNs it names. The
operator's key is known out of band (configured as the operator's peer ID, which embeds
its Ed25519 key), so a seed list from anywhere, a file, a web page or another SSN, can
be checked. A higher ``serial`` replaces a lower one; an expired list is refused.

Encoding (canonical CBOR, ``neonet.core.cbor``)::

    signed = [body, operator_public_key, signature]
    body   = [1, network, serial, issued_at, expires_at, [entry, ...]]
    entry  = [member_id, region, [multiaddr text, ...]]

``operator_public_key`` is the libp2p protobuf encoding of an Ed25519 key; the signature
is Ed25519 over ``DOMAIN || body bytes``. Times are whole Unix seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from neonet.core import cbor
from neonet.core.errors import DecodeError, NeoNetError
from neonet.core.keys import Ed25519Identity, KeyType, PublicKey
from neonet.core.peer_id import PeerId

DOMAIN = b"neonet/ssn/seed-list/v1"
VERSION = 1
MAX_ENTRIES = 10_000
MAX_ADDRS_PER_ENTRY = 8
MAX_NETWORK_LENGTH = 64
MAX_REGION_LENGTH = 64
MAX_ADDR_LENGTH = 256
MAX_MEMBER_ID_LENGTH = 128


class SeedListError(NeoNetError):
    """A seed list is malformed, not signed by the expected operator, or expired."""


@dataclass(frozen=True, slots=True)
class SeedEntry:
    member_id: bytes
    region: str
    addrs: tuple[str, ...]

    @property
    def peer_id(self) -> PeerId:
        return PeerId(self.member_id)


@dataclass(frozen=True, slots=True)
class SeedList:
    network: str
    serial: int
    issued_at: int
    expires_at: int
    entries: tuple[SeedEntry, ...]

    def body(self) -> list[object]:
        return [
            VERSION,
            self.network,
            self.serial,
            self.issued_at,
            self.expires_at,
            [[e.member_id, e.region, list(e.addrs)] for e in self.entries],
        ]

    def sign(self, operator: Ed25519Identity) -> bytes:
        """The signed, encoded list (what SSNs and clients are given)."""
        body = cbor.encode(self.body())
        signature = operator.sign(DOMAIN + body)
        return cbor.encode([cbor.decode(body), operator.public_key.to_protobuf(), signature])

    def entry(self, member_id: bytes) -> SeedEntry | None:
        for entry in self.entries:
            if entry.member_id == member_id:
                return entry
        return None

    def regions(self) -> list[str]:
        return sorted({e.region for e in self.entries})

    def in_region_first(self, region: str | None) -> list[SeedEntry]:
        """Entries of ``region`` first, then the others, each group in list order."""
        own = [e for e in self.entries if e.region == region]
        return own + [e for e in self.entries if e.region != region]


def _text(value: object, limit: int, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise DecodeError(f"seed list {what} must be non-empty text of at most {limit} characters")
    return value


def _integer(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 63:
        raise DecodeError(f"seed list {what} must be a non-negative integer")
    return value


def _decode_body(value: object) -> SeedList:
    if not isinstance(value, list) or len(value) != 6:
        raise DecodeError("seed list body must be a 6-item array")
    version, network, serial, issued_at, expires_at, raw_entries = value
    if version != VERSION or isinstance(version, bool):
        raise DecodeError(f"unsupported seed list version {version!r}")
    if not isinstance(raw_entries, list) or not 0 < len(raw_entries) <= MAX_ENTRIES:
        raise DecodeError(f"seed list must have 1 to {MAX_ENTRIES} entries")
    entries = []
    seen: set[bytes] = set()
    for raw in raw_entries:
        if not isinstance(raw, list) or len(raw) != 3:
            raise DecodeError("seed list entry must be a 3-item array")
        member_id, region, addrs = raw
        if not isinstance(member_id, bytes) or not 0 < len(member_id) <= MAX_MEMBER_ID_LENGTH:
            raise DecodeError("seed list entry has a bad member ID")
        try:
            PeerId(member_id)
        except NeoNetError as exc:
            raise DecodeError(f"seed list entry member ID is not a peer ID: {exc}") from None
        if member_id in seen:
            raise DecodeError("seed list names a member twice")
        seen.add(member_id)
        if not isinstance(addrs, list) or not 0 < len(addrs) <= MAX_ADDRS_PER_ENTRY:
            raise DecodeError(f"seed list entry must have 1 to {MAX_ADDRS_PER_ENTRY} addresses")
        entries.append(
            SeedEntry(
                member_id,
                _text(region, MAX_REGION_LENGTH, "region"),
                tuple(_text(a, MAX_ADDR_LENGTH, "address") for a in addrs),
            )
        )
    issued = _integer(issued_at, "issued_at")
    expires = _integer(expires_at, "expires_at")
    if expires <= issued:
        raise DecodeError("seed list expires before it was issued")
    return SeedList(
        _text(network, MAX_NETWORK_LENGTH, "network"),
        _integer(serial, "serial"),
        issued,
        expires,
        tuple(entries),
    )


def verify_seed_list(data: bytes, operator: PeerId, now: float) -> SeedList:
    """Decode ``data`` and check it is the operator's and current; ``SeedListError`` if not."""
    try:
        value = cbor.decode(data)
        if not isinstance(value, list) or len(value) != 3:
            raise DecodeError("signed seed list must be a 3-item array")
        body_value, key_bytes, signature = value
        if not isinstance(key_bytes, bytes) or not isinstance(signature, bytes):
            raise DecodeError("seed list key and signature must be byte strings")
        seeds = _decode_body(body_value)
        key = PublicKey.from_protobuf(key_bytes)
    except DecodeError as exc:
        raise SeedListError(f"malformed seed list: {exc}") from None
    if key.key_type is not KeyType.ED25519 or not operator.matches_public_key(key):
        raise SeedListError("seed list is not signed by the expected operator")
    if not key.verify(signature, DOMAIN + cbor.encode(body_value)):
        raise SeedListError("seed list signature is invalid")
    if now >= seeds.expires_at:
        raise SeedListError(f"seed list serial {seeds.serial} expired at {seeds.expires_at}")
    return seeds


def newer(current: SeedList | None, candidate: SeedList) -> bool:
    """True when ``candidate`` should replace ``current`` (a higher serial of one network)."""
    if current is None:
        return True
    if candidate.network != current.network:
        return False
    return candidate.serial > current.serial


def make_seed_list(
    network: str,
    serial: int,
    entries: Sequence[SeedEntry],
    *,
    issued_at: int,
    lifetime: int = 365 * 24 * 3600,
) -> SeedList:
    """A list ready to sign; checks the same limits the decoder enforces."""
    seeds = SeedList(network, serial, issued_at, issued_at + lifetime, tuple(entries))
    _decode_body(cbor.decode(cbor.encode(seeds.body())))
    return seeds


__all__ = [
    "SeedEntry",
    "SeedList",
    "SeedListError",
    "make_seed_list",
    "newer",
    "verify_seed_list",
]
