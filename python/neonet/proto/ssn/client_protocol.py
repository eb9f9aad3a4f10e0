"""The SSN client protocol ``/neonet/ssn/client/1.0.0``: messages, frames and records (sans-I/O).

A client (a browser or a Python node) keeps one stream open to its SSN. Both sides send
frames: an unsigned varint length, then one canonical CBOR array (``neonet.core.cbor``)
of at most ``MAX_FRAME`` bytes. Every request carries a request ID chosen by the client;
the answer carries the same ID. Messages, version 1::

    [1, 0, 0, nonce, server_id]                        CHALLENGE  (server, first frame)
    [1, 1, rid, presence, proof, name_record | null]   REGISTER
    [1, 2, rid]                                        REGISTERED
    [1, 3, rid, name text | peer ID bytes]             LOOKUP
    [1, 4, rid, presence, name_record | null]          FOUND
    [1, 5, rid, to peer ID, payload]                   SIGNAL
    [1, 6, rid, status]                                SIGNAL_SENT (0 delivered, 1 queued)
    [1, 7, rid, code, text]                            ERROR      (see ``ErrorCode``)
    [1, 8, 0, from peer ID, payload]                   INCOMING   (server push)

``presence`` is an encoded ``PresenceRecord``: ``[1, peer_id, ssn_id, [addr, ...], seq,
expires, signature]`` signed by the client's key (its peer ID embeds the Ed25519 key)
over ``PRESENCE_DOMAIN || cbor(body)``. ``proof`` proves possession of that key for this
connection: a signature over ``PROOF_DOMAIN || nonce || server_id || presence``, so a
registration cannot be replayed to another SSN or on another connection. Name records
are those of ``neonet.proto.names``. Decoders refuse anything that is not canonical or
breaks a limit, with ``DecodeError`` (a ``RemoteProtocolError``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from neonet.core import backend, cbor
from neonet.core.errors import DecodeError, NeoNetError
from neonet.core.keys import Ed25519Identity, KeyType
from neonet.core.peer_id import PeerId
from neonet.core.varint import encode_uvarint

PROTOCOL_ID = "/neonet/ssn/client/1.0.0"
VERSION = 1
MAX_FRAME = 64 << 10
MAX_PAYLOAD = 16 << 10
MAX_ADDRS = 16
MAX_ADDR_LENGTH = 256
MAX_ID_LENGTH = 128
MAX_TEXT = 512
MAX_REQUEST_ID = (1 << 63) - 1
NONCE_LENGTH = 32
PRESENCE_DOMAIN = b"neonet/ssn/presence/v1\x00"
PROOF_DOMAIN = b"neonet/ssn/register-proof/v1\x00"


class Kind(IntEnum):
    CHALLENGE = 0
    REGISTER = 1
    REGISTERED = 2
    LOOKUP = 3
    FOUND = 4
    SIGNAL = 5
    SIGNAL_SENT = 6
    ERROR = 7
    INCOMING = 8


class ErrorCode(IntEnum):
    """Why a request failed; each has its own code so a client can react to it."""

    BAD_REQUEST = 1
    NOT_REGISTERED = 2
    BAD_PROOF = 3
    UNKNOWN_PEER = 4
    OFFLINE = 5
    MAILBOX_FULL = 6
    RATE_LIMITED = 7
    TOO_LARGE = 8
    NAME_TAKEN = 9
    UNAVAILABLE = 10
    OVER_CAPACITY = 11


ERROR_CODES = frozenset(code.value for code in ErrorCode)


class SignalStatus(IntEnum):
    DELIVERED = 0
    QUEUED = 1


class SsnRequestError(NeoNetError):
    """An SSN answered a request with ERROR; ``code`` says why (``ErrorCode``)."""

    def __init__(self, code: ErrorCode, text: str) -> None:
        super().__init__(f"{code.name.lower()}: {text}")
        self.code = code
        self.text = text


# --- presence records ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PresenceRecord:
    """Where a peer is registered (``ssn_id``) and how to dial it (``addrs``)."""

    peer_id: bytes
    ssn_id: bytes
    addrs: tuple[str, ...]
    seq: int
    expires: int  # Unix seconds
    signature: bytes

    def body(self) -> list[object]:
        return [VERSION, self.peer_id, self.ssn_id, list(self.addrs), self.seq, self.expires]

    def signed_bytes(self) -> bytes:
        return PRESENCE_DOMAIN + cbor.encode(self.body())

    def encode(self) -> bytes:
        return cbor.encode([*self.body(), self.signature])


def sign_presence(
    identity: Ed25519Identity,
    ssn_id: bytes,
    addrs: Sequence[str],
    *,
    seq: int,
    expires: int,
) -> PresenceRecord:
    peer = PeerId.from_public_key(identity.public_key).to_bytes()
    unsigned = PresenceRecord(peer, ssn_id, tuple(addrs)[:MAX_ADDRS], seq, expires, b"")
    signature = identity.sign(unsigned.signed_bytes())
    return PresenceRecord(peer, ssn_id, unsigned.addrs, seq, expires, signature)


def _uint(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 63:
        raise DecodeError(f"{what} must be an unsigned integer below 2**63")
    return value


def _identifier(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise DecodeError(f"{what} must be a byte string of 1 to {MAX_ID_LENGTH} bytes")
    return value


def _peer_bytes(value: object, what: str) -> bytes:
    raw = _identifier(value, what)
    try:
        PeerId(raw)
    except NeoNetError as exc:
        raise DecodeError(f"{what} is not a peer ID: {exc}") from None
    return raw


def decode_presence(data: bytes) -> PresenceRecord:
    """Structure only; ``verify_presence`` checks the signature and expiry."""
    if len(data) > MAX_FRAME:
        raise DecodeError("presence record too large")
    value = cbor.decode(data)
    if not isinstance(value, list) or len(value) != 7:
        raise DecodeError("a presence record is an array of 7 items")
    version, peer_id, ssn_id, addrs, seq, expires, signature = value
    if version != VERSION or isinstance(version, bool):
        raise DecodeError(f"unknown presence record version {version!r}")
    if not isinstance(addrs, list) or len(addrs) > MAX_ADDRS:
        raise DecodeError(f"presence addresses: an array of at most {MAX_ADDRS}")
    for address in addrs:
        if not isinstance(address, str) or not 0 < len(address) <= MAX_ADDR_LENGTH:
            raise DecodeError("a presence address is text of 1 to 256 characters")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise DecodeError("presence signature must be 64 bytes")
    return PresenceRecord(
        _peer_bytes(peer_id, "presence peer ID"),
        _peer_bytes(ssn_id, "presence SSN ID"),
        tuple(addrs),  # type: ignore[arg-type]
        _uint(seq, "presence seq"),
        _uint(expires, "presence expiry"),
        signature,
    )


Ed25519Verifier = Callable[[bytes, bytes, bytes], bool]
"""``(raw public key, message, signature) -> valid``: the backend's ``verify_signature``
(the Rust core's when native) can be passed in; the default is ``PublicKey.verify``."""


def _verified(
    peer_id: bytes, signature: bytes, message: bytes, verify_ed25519: Ed25519Verifier | None
) -> bool:
    key = PeerId(peer_id).extract_public_key()
    if key is None or key.key_type is not KeyType.ED25519:
        raise DecodeError("the peer ID does not embed an Ed25519 key")
    if verify_ed25519 is not None:
        return verify_ed25519(key.data, message, signature)
    return key.verify(signature, message)


def verify_presence(
    record: PresenceRecord, now: float, *, verify_ed25519: Ed25519Verifier | None = None
) -> None:
    """``DecodeError`` unless the record is signed by the key its peer ID embeds and current."""
    if not _verified(record.peer_id, record.signature, record.signed_bytes(), verify_ed25519):
        raise DecodeError("bad presence record signature")
    if record.expires <= now:
        raise DecodeError("presence record has expired")


def proof_bytes(nonce: bytes, server_id: bytes, presence: bytes) -> bytes:
    return PROOF_DOMAIN + nonce + server_id + presence


def verify_proof(
    record: PresenceRecord,
    proof: bytes,
    nonce: bytes,
    server_id: bytes,
    *,
    verify_ed25519: Ed25519Verifier | None = None,
) -> None:
    signed = proof_bytes(nonce, server_id, record.encode())
    if not _verified(record.peer_id, proof, signed, verify_ed25519):
        raise DecodeError("the proof of key possession does not verify")


# --- messages -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Challenge:
    nonce: bytes
    server_id: bytes
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Register:
    request_id: int
    presence: bytes
    proof: bytes
    name_record: bytes | None


@dataclass(frozen=True, slots=True)
class Registered:
    request_id: int


@dataclass(frozen=True, slots=True)
class Lookup:
    request_id: int
    query: str | bytes  # a name, or a peer ID's bytes


@dataclass(frozen=True, slots=True)
class Found:
    request_id: int
    presence: bytes
    name_record: bytes | None


@dataclass(frozen=True, slots=True)
class Signal:
    request_id: int
    to: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class SignalSent:
    request_id: int
    status: SignalStatus


@dataclass(frozen=True, slots=True)
class Error:
    request_id: int
    code: ErrorCode
    text: str


@dataclass(frozen=True, slots=True)
class Incoming:
    sender: bytes
    payload: bytes
    request_id: int = 0


ClientMessage = (
    Challenge | Register | Registered | Lookup | Found | Signal | SignalSent | Error | Incoming
)


def encode_message(message: ClientMessage) -> bytes:
    """The message as one frame body (canonical CBOR, without the length prefix)."""
    head: list[object] = [VERSION]
    if isinstance(message, Challenge):
        body = [*head, Kind.CHALLENGE, 0, message.nonce, message.server_id]
    elif isinstance(message, Register):
        body = [
            *head,
            Kind.REGISTER,
            message.request_id,
            message.presence,
            message.proof,
            message.name_record,
        ]
    elif isinstance(message, Registered):
        body = [*head, Kind.REGISTERED, message.request_id]
    elif isinstance(message, Lookup):
        body = [*head, Kind.LOOKUP, message.request_id, message.query]
    elif isinstance(message, Found):
        body = [*head, Kind.FOUND, message.request_id, message.presence, message.name_record]
    elif isinstance(message, Signal):
        body = [*head, Kind.SIGNAL, message.request_id, message.to, message.payload]
    elif isinstance(message, SignalSent):
        body = [*head, Kind.SIGNAL_SENT, message.request_id, int(message.status)]
    elif isinstance(message, Error):
        body = [*head, Kind.ERROR, message.request_id, int(message.code), message.text]
    else:
        body = [*head, Kind.INCOMING, 0, message.sender, message.payload]
    return cbor.encode([int(item) if isinstance(item, Kind) else item for item in body])


_LENGTHS = {
    Kind.CHALLENGE: 5,
    Kind.REGISTER: 6,
    Kind.REGISTERED: 3,
    Kind.LOOKUP: 4,
    Kind.FOUND: 5,
    Kind.SIGNAL: 5,
    Kind.SIGNAL_SENT: 4,
    Kind.ERROR: 5,
    Kind.INCOMING: 5,
}


def _blob(value: object, what: str, limit: int = MAX_FRAME) -> bytes:
    if not isinstance(value, bytes) or len(value) > limit:
        raise DecodeError(f"{what} must be a byte string of at most {limit} bytes")
    return value


def _optional_blob(value: object, what: str) -> bytes | None:
    return None if value is None else _blob(value, what)


def decode_message(data: bytes) -> ClientMessage:
    """One frame body to a message; ``DecodeError`` for anything malformed or non-canonical."""
    if len(data) > MAX_FRAME:
        raise DecodeError(f"client message of {len(data)} bytes exceeds {MAX_FRAME}")
    value = cbor.decode(data)
    if not isinstance(value, list) or len(value) < 3:
        raise DecodeError("a client message is an array of at least 3 items")
    if value[0] != VERSION or isinstance(value[0], bool):
        raise DecodeError(f"unsupported client protocol version {value[0]!r}")
    raw_kind = value[1]
    if not isinstance(raw_kind, int) or isinstance(raw_kind, bool) or raw_kind not in _LENGTHS:
        raise DecodeError(f"unknown client message kind {raw_kind!r}")
    kind = Kind(raw_kind)
    if len(value) != _LENGTHS[kind]:
        raise DecodeError(f"{kind.name} has {_LENGTHS[kind]} items")
    rid = value[2]
    if not isinstance(rid, int) or isinstance(rid, bool) or not 0 <= rid <= MAX_REQUEST_ID:
        raise DecodeError("request ID out of range")
    fields = value[3:]
    if kind in (Kind.CHALLENGE, Kind.INCOMING) and rid != 0:
        raise DecodeError(f"{kind.name} carries request ID 0")
    if kind is Kind.CHALLENGE:
        nonce = _blob(fields[0], "nonce", NONCE_LENGTH)
        if len(nonce) != NONCE_LENGTH:
            raise DecodeError(f"the nonce has {NONCE_LENGTH} bytes")
        return Challenge(nonce, _peer_bytes(fields[1], "server ID"), rid)
    if kind is Kind.REGISTER:
        return Register(
            rid,
            _blob(fields[0], "presence"),
            _blob(fields[1], "proof", 64),
            _optional_blob(fields[2], "name record"),
        )
    if kind is Kind.REGISTERED:
        return Registered(rid)
    if kind is Kind.LOOKUP:
        query = fields[0]
        if isinstance(query, str):
            if not 0 < len(query) <= MAX_TEXT:
                raise DecodeError("a name query has 1 to 512 characters")
            return Lookup(rid, query)
        return Lookup(rid, _peer_bytes(query, "lookup peer ID"))
    if kind is Kind.FOUND:
        return Found(rid, _blob(fields[0], "presence"), _optional_blob(fields[1], "name record"))
    if kind is Kind.SIGNAL:
        return Signal(rid, _peer_bytes(fields[0], "signal recipient"), _blob(fields[1], "payload"))
    if kind is Kind.SIGNAL_SENT:
        status = fields[0]
        if not isinstance(status, int) or isinstance(status, bool) or status not in (0, 1):
            raise DecodeError("unknown signal status")
        return SignalSent(rid, SignalStatus(status))
    if kind is Kind.ERROR:
        code, text = fields
        if not isinstance(code, int) or isinstance(code, bool) or code not in ERROR_CODES:
            raise DecodeError(f"unknown error code {code!r}")
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise DecodeError("error text must be at most 512 characters")
        return Error(rid, ErrorCode(code), text)
    return Incoming(_peer_bytes(fields[0], "signal sender"), _blob(fields[1], "payload"))


# --- the signal path: the backend's byte-level codec (neonet.core.ssn_wire) ------------
# SignalStatus by its wire value (the backend's parser returns the value; federation too).
SIGNAL_STATUSES = (SignalStatus.DELIVERED, SignalStatus.QUEUED)


def decode_message_fast(data: bytes) -> ClientMessage:
    """``decode_message``, with SIGNAL, SIGNAL_SENT and INCOMING read by the backend's
    signal-path parser (the same result; anything it does not take goes to
    ``decode_message``, which explains what is wrong)."""
    fields = backend.ssn_wire.parse_signal_path(data, False)
    if fields is None:
        return decode_message(data)
    kind = fields[0]
    if kind == 5:
        return Signal(fields[1], fields[2], fields[3])
    if kind == 6:
        return SignalSent(fields[1], SIGNAL_STATUSES[fields[2]])
    return Incoming(fields[2], fields[3])


def frame_message_fast(message: ClientMessage) -> bytes | None:
    """The whole frame of a signal-path message with a payload of at most
    ``MAX_PAYLOAD`` bytes, built by the backend (``frame(encode_message(message))``
    byte for byte); None for any other message (encode it the general way)."""
    wire = backend.ssn_wire
    if isinstance(message, SignalSent):
        return wire.encode_status(False, message.request_id, message.status)
    if isinstance(message, Incoming) and len(message.payload) <= MAX_PAYLOAD:
        return wire.encode_incoming(message.sender, message.payload)
    if isinstance(message, Signal) and len(message.payload) <= MAX_PAYLOAD:
        return wire.encode_signal(message.request_id, message.to, message.payload)
    return None


# --- frames ---------------------------------------------------------------------------
def frame(body: bytes) -> bytes:
    return encode_uvarint(len(body)) + body


class FrameDecoder:
    """Splits a byte stream into frame bodies; refuses a frame over ``max_frame`` at once."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        # The backend splits (neonet.core.ssn_wire.split_frames); only a partial frame
        # is kept, and an empty buffer keeps no storage (an idle stream holds none).
        if self._buffer:
            self._buffer += data
            data = bytes(self._buffer)
        elif not isinstance(data, bytes):
            data = bytes(data)
        frames, used = backend.ssn_wire.split_frames(data, self.max_frame)
        self._buffer = bytearray(data[used:]) if used < len(data) else bytearray()
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buffer)


__all__ = [
    "MAX_FRAME",
    "MAX_PAYLOAD",
    "PROTOCOL_ID",
    "SIGNAL_STATUSES",
    "Challenge",
    "ClientMessage",
    "Ed25519Verifier",
    "Error",
    "ErrorCode",
    "Found",
    "FrameDecoder",
    "Incoming",
    "Kind",
    "Lookup",
    "PresenceRecord",
    "Register",
    "Registered",
    "Signal",
    "SignalSent",
    "SignalStatus",
    "SsnRequestError",
    "decode_message",
    "decode_message_fast",
    "decode_presence",
    "encode_message",
    "frame",
    "frame_message_fast",
    "proof_bytes",
    "sign_presence",
    "verify_presence",
    "verify_proof",
]
