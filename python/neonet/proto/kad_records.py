"""Record validation for the Kademlia DHT: namespaced validators (validate + select).

libp2p/specs kad-dht/README.md, "Entry validation": a record key has the form
``/<namespace>/<rest>``; the validator registered for the namespace decides whether a
value is valid (``validate``, on GET results and before storing a PUT) and which of
several valid values is best (``select``, stable). Keys in a namespace nobody
registered are refused, as in go- and rust-libp2p's validating stores.

``PublicKeyValidator`` serves ``/pk/<peer ID multihash bytes>``: the value is the
protobuf ``PublicKey`` whose peer ID is that multihash (the namespace every libp2p
implementation knows). ``BlobValidator`` serves ``/neonet-blob/<hex hash>``: immutable
values whose key is the BLAKE3 hash (domain ``BLOB_DOMAIN``) of the value, so anyone
may store any value there and nobody can change it. ``neonet.proto.names`` adds
``/neonet-name/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import blake3

from neonet.core.errors import DecodeError, RemoteProtocolError
from neonet.core.keys import PublicKey
from neonet.core.peer_id import PeerId

MAX_VALUE_SIZE = 64 * 1024  # a record value larger than this is refused
MAX_NAMESPACE_LENGTH = 64
BLOB_PREFIX = b"/neonet-blob/"
BLOB_DOMAIN = b"neonet/dht-blob/v1\x00"


class InvalidRecordError(RemoteProtocolError):
    """A record that must not be stored or returned; the message says why."""


class Validator(Protocol):
    """What a namespace's validator provides (the spec's ``Validator`` interface)."""

    def validate(self, key: bytes, value: bytes, now: float) -> None:
        """Raise ``InvalidRecordError`` (with the reason) unless ``value`` is valid at ``now``."""

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        """The index of the best of several valid ``values`` (stable: ties go to the first)."""


def namespace_of(key: bytes) -> str:
    """The namespace of ``/<namespace>/<rest>``; ``InvalidRecordError`` for other shapes."""
    if not key.startswith(b"/"):
        raise InvalidRecordError("record key is not namespaced (must start with /namespace/)")
    end = key.find(b"/", 1)
    if end <= 1 or end > MAX_NAMESPACE_LENGTH + 1:
        raise InvalidRecordError("record key has no /namespace/ prefix")
    try:
        return key[1:end].decode("ascii")
    except UnicodeDecodeError:
        raise InvalidRecordError("record namespace is not ASCII") from None


class NamespacedValidator:
    """Dispatches to one validator per namespace; unknown namespaces are refused."""

    def __init__(
        self, validators: Mapping[str, Validator], *, max_value_size: int = MAX_VALUE_SIZE
    ) -> None:
        self.validators = dict(validators)
        self.max_value_size = max_value_size

    def _validator(self, key: bytes) -> Validator:
        namespace = namespace_of(key)
        validator = self.validators.get(namespace)
        if validator is None:
            raise InvalidRecordError(f"no validator for namespace {namespace!r}")
        return validator

    def validate(self, key: bytes, value: bytes, now: float) -> None:
        if len(value) > self.max_value_size:
            raise InvalidRecordError(
                f"record value of {len(value)} bytes exceeds {self.max_value_size}"
            )
        self._validator(key).validate(key, value, now)

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        if not values:
            raise ValueError("select needs at least one value")
        return self._validator(key).select(key, values)

    def expiry(self, key: bytes, value: bytes) -> float | None:
        """When a valid record stops being valid by its own terms (None: never)."""
        expiry = getattr(self._validator(key), "expiry", None)
        return None if expiry is None else float(expiry(key, value))


class PublicKeyValidator:
    """``/pk/<multihash>``: the value must be the public key that hashes to the peer ID."""

    def validate(self, key: bytes, value: bytes, now: float) -> None:
        if not key.startswith(b"/pk/"):
            raise InvalidRecordError("not a /pk/ key")
        try:
            public_key = PublicKey.from_protobuf(value)
            peer = PeerId(key[4:])
        except (DecodeError, ValueError) as exc:
            raise InvalidRecordError(f"bad /pk/ record: {exc}") from None
        if not peer.matches_public_key(public_key):
            raise InvalidRecordError("/pk/ record key does not belong to the peer ID")

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        return 0  # all valid values are the same key


class AcceptAnyValidator:
    """Accepts every value and keeps the first: for test namespaces only."""

    def validate(self, key: bytes, value: bytes, now: float) -> None:
        return None

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        return 0


def public_key_record_key(peer: PeerId) -> bytes:
    return b"/pk/" + peer.to_bytes()


def blob_key(value: bytes) -> bytes:
    """The ``/neonet-blob/`` key of ``value``: its domain-tagged BLAKE3 hash in hex."""
    digest = blake3.blake3(BLOB_DOMAIN + value).hexdigest()
    return BLOB_PREFIX + digest.encode("ascii")


class BlobValidator:
    """``/neonet-blob/<hex>``: the value must hash to the key (immutable, content-addressed)."""

    def validate(self, key: bytes, value: bytes, now: float) -> None:
        if blob_key(value) != key:
            raise InvalidRecordError("/neonet-blob/ value does not hash to its key")

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        return 0  # every valid value is the same bytes
