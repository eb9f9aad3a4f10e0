"""The inter-SSN protocol ``/neonet/ssn/federation/1.0.0`` and the record store (sans-I/O).

Each presence and name record lives on the ``R`` owners of its key (``placement``):
the peer ID's bytes for presence, ``/neonet-name/<name>`` for a name. An owner keeps the
presence next to the name record, so a lookup by either key is answered in one hop with
everything needed to reach the peer. Frames and request IDs are as in the client protocol
(``client_protocol.frame``); messages, version 1::

    [1, 0, rid, key, presence, name_record | null]   STORE     -> STORED or ERROR
    [1, 1, rid, key]                                 LOOKUP    -> FOUND
    [1, 2, rid, from, to, payload]                   FORWARD   -> FORWARDED or ERROR
    [1, 3, rid]                                      STORED
    [1, 4, rid, presence | null, name_record | null] FOUND
    [1, 5, rid, status]                              FORWARDED (0 delivered, 1 queued)
    [1, 6, rid, code, text]                          ERROR     (client_protocol.ErrorCode)

Handoff after a membership change is a STORE of each record that moved. ``RecordStore``
checks every record (signatures, expiry, key, name ownership and rotation) before it
keeps it, so an SSN cannot be made to hold a forged presence or a stolen name.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import IntEnum

from neonet.core import backend, cbor
from neonet.core.errors import DecodeError, LimitExceededError
from neonet.proto.kad_records import InvalidRecordError
from neonet.proto.names import (
    KEY_PREFIX,
    NameRecord,
    decode_name_record,
    supersedes,
    verify_name_record,
)
from neonet.proto.ssn.client_protocol import ERROR_CODES as cp_ERROR_CODES
from neonet.proto.ssn.client_protocol import (
    MAX_FRAME,
    MAX_ID_LENGTH,
    MAX_PAYLOAD,
    SIGNAL_STATUSES,
    Ed25519Verifier,
    ErrorCode,
    PresenceRecord,
    SignalStatus,
    _blob,
    _identifier,
    _optional_blob,
    _peer_bytes,
    decode_presence,
    verify_presence,
)

PROTOCOL_ID = "/neonet/ssn/federation/1.0.0"
MEMBERSHIP_PROTOCOL_ID = "/neonet/ssn/membership/1.0.0"
VERSION = 1
MAX_KEY_LENGTH = 80


class FederationKind(IntEnum):
    STORE = 0
    LOOKUP = 1
    FORWARD = 2
    STORED = 3
    FOUND = 4
    FORWARDED = 5
    ERROR = 6


@dataclass(frozen=True, slots=True)
class Store:
    request_id: int
    key: bytes
    presence: bytes
    name_record: bytes | None


@dataclass(frozen=True, slots=True)
class FederationLookup:
    request_id: int
    key: bytes


@dataclass(frozen=True, slots=True)
class Forward:
    request_id: int
    sender: bytes
    to: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class Stored:
    request_id: int


@dataclass(frozen=True, slots=True)
class FederationFound:
    request_id: int
    presence: bytes | None
    name_record: bytes | None


@dataclass(frozen=True, slots=True)
class Forwarded:
    request_id: int
    status: SignalStatus


@dataclass(frozen=True, slots=True)
class FederationError:
    request_id: int
    code: ErrorCode
    text: str


FederationMessage = (
    Store | FederationLookup | Forward | Stored | FederationFound | Forwarded | FederationError
)
_LENGTHS = {0: 6, 1: 4, 2: 6, 3: 3, 4: 5, 5: 4, 6: 5}


def encode_message(message: FederationMessage) -> bytes:
    rid = message.request_id
    body: list[object]
    if isinstance(message, Store):
        body = [0, rid, message.key, message.presence, message.name_record]
    elif isinstance(message, FederationLookup):
        body = [1, rid, message.key]
    elif isinstance(message, Forward):
        body = [2, rid, message.sender, message.to, message.payload]
    elif isinstance(message, Stored):
        body = [3, rid]
    elif isinstance(message, FederationFound):
        body = [4, rid, message.presence, message.name_record]
    elif isinstance(message, Forwarded):
        body = [5, rid, int(message.status)]
    else:
        body = [6, rid, int(message.code), message.text]
    return cbor.encode([VERSION, *body])


def _key(value: object) -> bytes:
    if not isinstance(value, bytes) or not 0 < len(value) <= MAX_KEY_LENGTH:
        raise DecodeError(f"a record key is 1 to {MAX_KEY_LENGTH} bytes")
    return value


def decode_message(data: bytes) -> FederationMessage:
    """One frame body to a message; ``DecodeError`` for anything malformed or non-canonical."""
    if len(data) > MAX_FRAME:
        raise DecodeError(f"federation message of {len(data)} bytes exceeds {MAX_FRAME}")
    value = cbor.decode(data)
    if not isinstance(value, list) or len(value) < 3:
        raise DecodeError("a federation message is an array of at least 3 items")
    if value[0] != VERSION or isinstance(value[0], bool):
        raise DecodeError(f"unsupported federation version {value[0]!r}")
    kind = value[1]
    if not isinstance(kind, int) or isinstance(kind, bool) or kind not in _LENGTHS:
        raise DecodeError(f"unknown federation message kind {kind!r}")
    if len(value) != _LENGTHS[kind]:
        raise DecodeError(f"{FederationKind(kind).name} has {_LENGTHS[kind]} items")
    rid = value[2]
    if not isinstance(rid, int) or isinstance(rid, bool) or not 0 <= rid < 1 << 63:
        raise DecodeError("request ID out of range")
    fields = value[3:]
    if kind == FederationKind.STORE:
        return Store(
            rid,
            _key(fields[0]),
            _blob(fields[1], "presence"),
            _optional_blob(fields[2], "name record"),
        )
    if kind == FederationKind.LOOKUP:
        return FederationLookup(rid, _key(fields[0]))
    if kind == FederationKind.FORWARD:
        return Forward(
            rid,
            _peer_bytes(fields[0], "signal sender"),
            _peer_bytes(fields[1], "signal recipient"),
            _blob(fields[2], "payload"),
        )
    if kind == FederationKind.STORED:
        return Stored(rid)
    if kind == FederationKind.FOUND:
        return FederationFound(
            rid, _optional_blob(fields[0], "presence"), _optional_blob(fields[1], "name record")
        )
    if kind == FederationKind.FORWARDED:
        status = fields[0]
        if not isinstance(status, int) or isinstance(status, bool) or status not in (0, 1):
            raise DecodeError("unknown signal status")
        return Forwarded(rid, SignalStatus(status))
    code, text = fields
    if not isinstance(code, int) or isinstance(code, bool) or code not in cp_ERROR_CODES:
        raise DecodeError(f"unknown error code {code!r}")
    if not isinstance(text, str) or len(text) > 512:
        raise DecodeError("error text must be at most 512 characters")
    return FederationError(rid, ErrorCode(code), text)


# --- the record store -------------------------------------------------------------------
class NameTakenError(InvalidRecordError):
    """The name belongs to another key and the new record does not rotate it over."""


class StoreFullError(LimitExceededError):
    """This SSN holds as many records as it is configured for."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A record as received (checked when stored), decoded only when asked: an SSN keeps
    R records per client of the federation, so the decoded objects would be memory per
    client (docs/benchmarks.md)."""

    presence_bytes: bytes
    name_bytes: bytes | None
    expires: int

    @property
    def presence(self) -> PresenceRecord:
        return decode_presence(self.presence_bytes)

    @property
    def name(self) -> NameRecord | None:
        return None if self.name_bytes is None else decode_name_record(self.name_bytes)


def presence_key(peer_id: bytes) -> bytes:
    return _identifier(peer_id, "peer ID")


class RecordStore:
    """The records this SSN owns, checked on the way in, bounded, expired lazily."""

    def __init__(
        self, max_entries: int = 1_000_000, *, verify_ed25519: Ed25519Verifier | None = None
    ) -> None:
        self.max_entries = max_entries
        self._verify_ed25519 = verify_ed25519
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()

    def put(self, key: bytes, presence_bytes: bytes, name_bytes: bytes | None, now: float) -> bool:
        """Check and keep a record; True if it replaced or added, False if ours is newer.

        Raises ``DecodeError``/``InvalidRecordError`` for a bad record, ``NameTakenError``
        for a name held by another key, ``StoreFullError`` when the table is full.
        """
        presence = decode_presence(presence_bytes)
        verify_presence(presence, now, verify_ed25519=self._verify_ed25519)
        name: NameRecord | None = None
        if name_bytes is not None:
            name = decode_name_record(name_bytes)
            verify_name_record(name, key=None, now=now)
            if name.peer_id.to_bytes() != presence.peer_id:
                raise InvalidRecordError("name record and presence name different peers")
        if key.startswith(KEY_PREFIX):
            if name is None or key != KEY_PREFIX + name.name.encode("ascii"):
                raise InvalidRecordError("a name key needs that name's record")
        elif key != presence.peer_id or len(key) > MAX_ID_LENGTH:
            raise InvalidRecordError("a presence key is the peer ID of its record")
        current = self.get(key, now)
        if current is not None:
            if name is not None and key.startswith(KEY_PREFIX) and current.name_bytes is not None:
                # Decoded only here: most STOREs are presence refreshes with no conflict.
                current_name = decode_name_record(current.name_bytes)
                if current_name.public_key != name.public_key and not supersedes(
                    name, current_name
                ):
                    raise NameTakenError(f"{name.name!r} is held by {current_name.peer_id}")
            current_presence = current.presence
            if current_presence.peer_id == presence.peer_id and (
                current_presence.seq > presence.seq
                or (current_presence.seq == presence.seq and current.name_bytes == name_bytes)
            ):
                return False
            if name is None and current.name_bytes is not None and key == presence.peer_id:
                name_bytes = current.name_bytes
        elif len(self._entries) >= self.max_entries:
            self.expire(now)
            if len(self._entries) >= self.max_entries:
                raise StoreFullError(f"record store full ({self.max_entries} records)")
        self._entries[key] = Entry(presence_bytes, name_bytes, presence.expires)
        self._entries.move_to_end(key)
        return True

    def get(self, key: bytes, now: float) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            del self._entries[key]
            return None
        return entry

    def keys(self) -> list[bytes]:
        return list(self._entries)

    def expire(self, now: float) -> int:
        stale = [k for k, e in self._entries.items() if e.expires <= now]
        for key in stale:
            del self._entries[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._entries)


# --- the signal path: the backend's byte-level codec (neonet.core.ssn_wire) ------------


def decode_message_fast(data: bytes) -> FederationMessage:
    """``decode_message``, with FORWARD and FORWARDED read by the backend's signal-path
    parser (the same result; anything else goes to ``decode_message``)."""
    fields = backend.ssn_wire.parse_signal_path(data, True)
    if fields is None:
        return decode_message(data)
    if fields[0] == 2:
        return Forward(fields[1], fields[2], fields[3], fields[4])
    return Forwarded(fields[1], SIGNAL_STATUSES[fields[2]])


def frame_message_fast(message: FederationMessage) -> bytes | None:
    """The whole frame of a FORWARD (payload of at most ``MAX_PAYLOAD`` bytes) or
    FORWARDED, built by the backend; None for any other message."""
    wire = backend.ssn_wire
    if isinstance(message, Forwarded):
        return wire.encode_status(True, message.request_id, message.status)
    if isinstance(message, Forward) and len(message.payload) <= MAX_PAYLOAD:
        return wire.encode_forward(message.request_id, message.sender, message.to, message.payload)
    return None


__all__ = [
    "MEMBERSHIP_PROTOCOL_ID",
    "PROTOCOL_ID",
    "Entry",
    "FederationError",
    "FederationFound",
    "FederationKind",
    "FederationLookup",
    "FederationMessage",
    "Forward",
    "Forwarded",
    "NameTakenError",
    "RecordStore",
    "Store",
    "StoreFullError",
    "Stored",
    "decode_message",
    "decode_message_fast",
    "encode_message",
    "frame_message_fast",
    "presence_key",
]
