"""NeoNet name records: ``alice`` -> peer ID, signed, sequenced, expiring, rotatable.

A name record binds a normalised user name to an Ed25519 key (and so to a peer ID).
It is stored in the DHT under ``/neonet-name/<normalised name>`` and checked by
``NameValidator`` (the ``neonet-name`` namespace of ``neonet.proto.kad_records``).

Normalisation (``normalise_name``): Unicode NFC, then case folding, then NFC again;
the result must be 1..63 characters from ``a-z``, ``0-9``, ``-`` and ``_``, neither
first nor last character being ``-`` or ``_``. Look-alikes therefore map to the same
key (``Alice``, ``ALICE`` and ``alice``) or are refused (a Cyrillic letter is outside
the set), so two look-alike claims cannot coexist.

Encoding: canonical CBOR (``neonet.core.cbor``), a positional array
``[1, name, public_key, seq, expires, rotations, signature]`` where ``public_key`` is
the libp2p protobuf ``PublicKey`` (Ed25519), ``seq`` and ``expires`` (Unix seconds) are
unsigned integers, ``rotations`` an array of at most ``MAX_ROTATIONS`` links
``[old_public_key, new_public_key, signature_by_old_key]`` and ``signature`` the
Ed25519 signature of the key over ``NAME_DOMAIN || cbor([1, name, public_key, seq,
expires, rotations])``. A rotation link is signed over ``ROTATION_DOMAIN ||
cbor([name, old_public_key, new_public_key])``.

Selection between two valid records (``select``): from the same key, the higher
``seq`` wins. A record from another key replaces the current one only if its
rotation chain starts at some link whose old key is the current record's key, every
link's new key is the next link's old key, the last new key is the record's own key,
and its ``seq`` is higher. Any other claim by a different key loses.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from neonet.core import cbor
from neonet.core.errors import DecodeError
from neonet.core.keys import Ed25519Identity, KeyType, PublicKey
from neonet.core.peer_id import PeerId
from neonet.proto.kad_records import InvalidRecordError

NAMESPACE = "neonet-name"
KEY_PREFIX = b"/neonet-name/"
NAME_DOMAIN = b"neonet/name-record/v1\x00"
ROTATION_DOMAIN = b"neonet/name-rotation/v1\x00"
VERSION = 1
MAX_NAME_LENGTH = 63
MAX_ROTATIONS = 8
MAX_RECORD_SIZE = 4096
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def normalise_name(name: str) -> str:
    """The canonical form of ``name``; ``ValueError`` if it is not a valid name."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
    if not 1 <= len(folded) <= MAX_NAME_LENGTH:
        raise ValueError(f"a name has 1 to {MAX_NAME_LENGTH} characters")
    bad = sorted(set(folded) - _ALLOWED)
    if bad:
        raise ValueError(f"characters not allowed in a name: {''.join(bad)!r} (a-z 0-9 - _)")
    if folded[0] in "-_" or folded[-1] in "-_":
        raise ValueError("a name neither starts nor ends with - or _")
    return folded


def name_key(name: str) -> bytes:
    """The DHT key of ``name`` (normalised first)."""
    return KEY_PREFIX + normalise_name(name).encode("ascii")


@dataclass(frozen=True, slots=True)
class Rotation:
    """One link of a key rotation: ``old_key`` hands the name to ``new_key``."""

    old_key: bytes  # protobuf PublicKey
    new_key: bytes
    signature: bytes

    @staticmethod
    def signed_bytes(name: str, old_key: bytes, new_key: bytes) -> bytes:
        return ROTATION_DOMAIN + cbor.encode([name, old_key, new_key])


@dataclass(frozen=True, slots=True)
class NameRecord:
    name: str
    public_key: bytes  # protobuf PublicKey (Ed25519)
    seq: int
    expires: int  # Unix seconds
    rotations: tuple[Rotation, ...]
    signature: bytes

    @property
    def peer_id(self) -> PeerId:
        return PeerId.from_public_key(PublicKey.from_protobuf(self.public_key))

    def _unsigned(self) -> list[object]:
        links = [[r.old_key, r.new_key, r.signature] for r in self.rotations]
        return [VERSION, self.name, self.public_key, self.seq, self.expires, links]

    def signed_bytes(self) -> bytes:
        return NAME_DOMAIN + cbor.encode(self._unsigned())

    def encode(self) -> bytes:
        return cbor.encode([*self._unsigned(), self.signature])


def sign_rotation(name: str, old: Ed25519Identity, new_key: PublicKey) -> Rotation:
    """A rotation link for ``name`` from ``old``'s key to ``new_key``, signed by ``old``."""
    canonical = normalise_name(name)
    old_bytes = old.public_key.to_protobuf()
    new_bytes = new_key.to_protobuf()
    signature = old.sign(Rotation.signed_bytes(canonical, old_bytes, new_bytes))
    return Rotation(old_bytes, new_bytes, signature)


def sign_name_record(
    name: str,
    identity: Ed25519Identity,
    *,
    seq: int,
    expires: int,
    rotations: Sequence[Rotation] = (),
) -> NameRecord:
    """A record binding ``name`` to ``identity``'s key, signed by it."""
    if not 0 <= seq < 1 << 64 or not 0 <= expires < 1 << 64:
        raise ValueError("seq and expires are unsigned 64-bit integers")
    if len(rotations) > MAX_ROTATIONS:
        raise ValueError(f"at most {MAX_ROTATIONS} rotation links")
    unsigned = NameRecord(
        normalise_name(name),
        identity.public_key.to_protobuf(),
        seq,
        expires,
        tuple(rotations),
        b"",
    )
    signature = identity.sign(unsigned.signed_bytes())
    return NameRecord(
        unsigned.name, unsigned.public_key, seq, expires, unsigned.rotations, signature
    )


def _bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError(f"name record {what} is not a byte string")
    return value


def _uint(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DecodeError(f"name record {what} is not an unsigned integer")
    return value


def decode_name_record(data: bytes) -> NameRecord:
    """Parse a record (structure only; ``verify_name_record`` checks the signatures)."""
    if len(data) > MAX_RECORD_SIZE:
        raise DecodeError(f"name record of {len(data)} bytes exceeds {MAX_RECORD_SIZE}")
    value = cbor.decode(data)
    if not isinstance(value, list) or len(value) != 7:
        raise DecodeError("a name record is an array of 7 items")
    version, name, public_key, seq, expires, links, signature = value
    if version != VERSION:
        raise DecodeError(f"unknown name record version {version!r}")
    if not isinstance(name, str):
        raise DecodeError("name record name is not text")
    if not isinstance(links, list) or len(links) > MAX_ROTATIONS:
        raise DecodeError(f"name record rotations: an array of at most {MAX_ROTATIONS}")
    rotations: list[Rotation] = []
    for link in links:
        if not isinstance(link, list) or len(link) != 3:
            raise DecodeError("a rotation link is an array of 3 byte strings")
        rotations.append(
            Rotation(_bytes(link[0], "old key"), _bytes(link[1], "new key"), _bytes(link[2], "sig"))
        )
    return NameRecord(
        name,
        _bytes(public_key, "public key"),
        _uint(seq, "seq"),
        _uint(expires, "expires"),
        tuple(rotations),
        _bytes(signature, "signature"),
    )


def _ed25519(encoded: bytes) -> PublicKey:
    key = PublicKey.from_protobuf(encoded)
    if key.key_type != KeyType.ED25519:
        raise InvalidRecordError("name records are signed with Ed25519 keys")
    return key


def verify_name_record(record: NameRecord, *, key: bytes | None, now: float) -> None:
    """Check name form, expiry and every signature; ``InvalidRecordError`` with the reason."""
    try:
        canonical = normalise_name(record.name)
    except ValueError as exc:
        raise InvalidRecordError(f"bad name: {exc}") from None
    if canonical != record.name:
        raise InvalidRecordError("name is not in normal form")
    if key is not None and key != KEY_PREFIX + canonical.encode("ascii"):
        raise InvalidRecordError("record is stored under another name's key")
    if record.expires <= now:
        raise InvalidRecordError("name record has expired")
    try:
        public_key = _ed25519(record.public_key)
        if not public_key.verify(record.signature, record.signed_bytes()):
            raise InvalidRecordError("bad name record signature")
        previous_new: bytes | None = None
        for link in record.rotations:
            old_key = _ed25519(link.old_key)
            if previous_new is not None and link.old_key != previous_new:
                raise InvalidRecordError("rotation chain is broken")
            signed = Rotation.signed_bytes(record.name, link.old_key, link.new_key)
            if not old_key.verify(link.signature, signed):
                raise InvalidRecordError("bad rotation signature")
            previous_new = link.new_key
    except DecodeError as exc:
        raise InvalidRecordError(f"bad key in name record: {exc}") from None
    if previous_new is not None and previous_new != record.public_key:
        raise InvalidRecordError("rotation chain does not end at the record's key")


def supersedes(new: NameRecord, current: NameRecord) -> bool:
    """Whether valid ``new`` replaces valid ``current`` (see the module docstring)."""
    if new.seq <= current.seq:
        return False
    if new.public_key == current.public_key:
        return True
    return any(link.old_key == current.public_key for link in new.rotations)


class NameValidator:
    """The ``/neonet-name/`` namespace validator (kad_records.Validator)."""

    def validate(self, key: bytes, value: bytes, now: float) -> None:
        try:
            record = decode_name_record(value)
        except DecodeError as exc:
            raise InvalidRecordError(f"malformed name record: {exc}") from None
        verify_name_record(record, key=key, now=now)

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        best_index = 0
        best = decode_name_record(values[0])
        for index, value in enumerate(values[1:], start=1):
            candidate = decode_name_record(value)
            if supersedes(candidate, best):
                best_index, best = index, candidate
        return best_index

    def expiry(self, key: bytes, value: bytes) -> int:
        """The record's own expiry (stores drop it then, before their own TTL)."""
        return decode_name_record(value).expires
