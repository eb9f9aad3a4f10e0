"""NeoBankof wire messages for ``/neonet/bank/transfer/2.0.0`` and ``/neonet/bank/sync/2.0.0``.

Sans-I/O (``docs/bank.md``, "Protocols"). Each message is an unsigned-varint length and
one canonical CBOR array; a stream carries request, response, request, response... The
first element says what the message is:

- ``[0, block, [certificate, ...]]`` SIGN: vote for ``block``; the certificates (at most
  ``MAX_PREVIOUS``) are applied first, so a lagging validator catches up.
- ``[1, certificate]`` CERTIFY: apply a certificate. ``[2, proof]`` PROOF: a fraud proof.
- ``[3, after, limit]`` HEADS: chain heads of accounts after ``after`` (byte order; ``b""``
  from the start), at most ``limit`` <= ``MAX_HEADS``.
- ``[4, account, start, count]`` RANGE: certificates of ``account`` from sequence
  ``start``, at most ``count`` <= ``MAX_RANGE``.
- ``[5, account]`` INCOMING: certificates of transfers to ``account`` not yet received
  (at most ``MAX_RANGE``).
- ``[6, [[block, [certificate, ...]], ...]]`` SIGN_BATCH: up to ``MAX_BATCH`` SIGN requests
  in one message; the answer is ``[6, [answer, ...], signature | null]``, one SIGN answer
  per item, where a VOTE is ``[0, validator, position]`` and ``signature`` (one per batch)
  signs the root of the Merkle tree over the voted blocks' vote messages
  (``votes.vote_tree``; ``null`` when nothing was voted).
- ``[7, purse_id, index]`` PURSE: what a claimant or refunder needs to know, answered
  ``[7, [owner, owner_sequence, next_claim_index, claimable, remaining, refunded,
  redeemed_spend | null]]`` (``[7, null]`` for an unknown purse).

Answers: ``[0, validator, signature]`` VOTE, ``[1, reason, proof | null, expected |
null]`` REFUSED (``expected``: the sequence the validator's certified chain of that
account expects, when it is behind the block),
``[2, outcome]`` DONE, ``[3, [[account, sequence, hash, balance], ...]]`` HEADS and
``[4, [certificate, ...]]`` RANGE (also the answer to INCOMING). Anything else is a ``DecodeError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from neonet.core import backend
from neonet.core.errors import DecodeError
from neonet.core.ledger import Block
from neonet.core.varint import encode_uvarint, try_decode_uvarint
from neonet.proto.bank.messages import Certificate, FraudProof, Spend

TRANSFER_PROTOCOL = "/neonet/bank/transfer/2.0.0"
SYNC_PROTOCOL = "/neonet/bank/sync/2.0.0"
MAX_FRAME = 1 << 20
MAX_PREVIOUS = 16
MAX_HEADS = 1024
MAX_RANGE = 512
MAX_BATCH = 256

SIGN, CERTIFY, PROOF, HEADS, RANGE, INCOMING, SIGN_BATCH, PURSE = 0, 1, 2, 3, 4, 5, 6, 7
VOTE, REFUSED, DONE = 0, 1, 2


def frame(message: list[object]) -> bytes:
    """One message with its length prefix."""
    body = backend.cbor_encode(message)  # the Rust encoder on the native backend
    return encode_uvarint(len(body)) + body


class FrameReader:
    """Splits received bytes into messages (canonical CBOR arrays), bounded in size."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max = max_frame

    def receive_data(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > 2 * self._max + 20:
            raise DecodeError("the peer sent far more than it was asked for")

    def next_message(self) -> list[object] | None:
        """The next whole message, or ``None``; ``DecodeError`` for a bad or huge frame."""
        decoded = try_decode_uvarint(bytes(self._buffer[:10]))
        if decoded is None:
            if len(self._buffer) >= 10:
                raise DecodeError("bad frame length")
            return None
        length, offset = decoded
        if length > self._max:
            raise DecodeError(f"frame of {length} bytes exceeds {self._max}")
        if len(self._buffer) < offset + length:
            return None
        body = bytes(self._buffer[offset : offset + length])
        del self._buffer[: offset + length]
        value = backend.cbor_decode(body)
        if type(value) is not list or not value or type(value[0]) is not int:
            raise DecodeError("a bank message is an array starting with its type")
        return list(value)


def _certificate_value(certificate: Certificate) -> list[object]:
    return certificate.to_value()


def sign_request(block: bytes, previous: list[Certificate]) -> list[object]:
    return [SIGN, block, [_certificate_value(c) for c in previous[-MAX_PREVIOUS:]]]


def certify_request(certificate: Certificate) -> list[object]:
    return [CERTIFY, _certificate_value(certificate)]


def proof_request(proof: FraudProof) -> list[object]:
    return [PROOF, proof.encode()]


def heads_request(after: bytes, limit: int) -> list[object]:
    return [HEADS, after, min(limit, MAX_HEADS)]


def incoming_request(account: bytes) -> list[object]:
    return [INCOMING, account]


def purse_request(purse_id: bytes, index: int) -> list[object]:
    return [PURSE, purse_id, index]


def range_request(account: bytes, start: int, count: int) -> list[object]:
    return [RANGE, account, start, min(count, MAX_RANGE)]


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded request; only the fields of its kind are set."""

    kind: int
    block: bytes = b""
    certificates: tuple[Certificate, ...] = ()
    proof: FraudProof | None = None
    account: bytes = b""
    start: int = 0
    count: int = 0
    batch: tuple[Request, ...] = ()


def _uint(value: object) -> int:
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise DecodeError("expected an unsigned integer")
    return value


def _bytes(value: object) -> bytes:
    if type(value) is not bytes:
        raise DecodeError("expected bytes")
    return value


def _sign(block: object, previous: object, known: Mapping[bytes, Block] | None) -> Request:
    if type(previous) is not list or len(previous) > MAX_PREVIOUS:
        raise DecodeError(f"at most {MAX_PREVIOUS} previous certificates")
    certificates = tuple(Certificate.from_value(value, known) for value in previous)
    return Request(SIGN, block=_bytes(block), certificates=certificates)


def sign_batch_request(items: list[tuple[bytes, list[Certificate]]]) -> list[object]:
    return [
        SIGN_BATCH,
        [
            [block, [_certificate_value(c) for c in previous[-MAX_PREVIOUS:]]]
            for block, previous in items
        ],
    ]


def parse_request(message: list[object], known: Mapping[bytes, Block] | None = None) -> Request:
    """A decoded request; ``known``: blocks decoded before (encoded -> decoded, e.g. the
    validator's recent votes), whose certificates need not parse them again."""
    kind = message[0]
    if kind == SIGN and len(message) == 3:
        return _sign(message[1], message[2], known)
    if kind == SIGN_BATCH and len(message) == 2:
        items = message[1]
        if type(items) is not list or not 0 < len(items) <= MAX_BATCH:
            raise DecodeError(f"a batch holds 1..{MAX_BATCH} sign requests")
        batch = []
        for item in items:
            if type(item) is not list or len(item) != 2:
                raise DecodeError("a batch item is [block, certificates]")
            batch.append(_sign(item[0], item[1], known))
        return Request(SIGN_BATCH, batch=tuple(batch))
    if kind == CERTIFY and len(message) == 2:
        return Request(CERTIFY, certificates=(Certificate.from_value(message[1]),))
    if kind == PROOF and len(message) == 2:
        return Request(PROOF, proof=FraudProof.decode(_bytes(message[1])))
    if kind == HEADS and len(message) == 3:
        limit = _uint(message[2])
        if not 0 < limit <= MAX_HEADS:
            raise DecodeError(f"heads limit must be 1..{MAX_HEADS}")
        return Request(HEADS, account=_bytes(message[1]), count=limit)
    if kind == RANGE and len(message) == 4:
        count = _uint(message[3])
        if not 0 < count <= MAX_RANGE:
            raise DecodeError(f"range count must be 1..{MAX_RANGE}")
        return Request(RANGE, account=_bytes(message[1]), start=_uint(message[2]), count=count)
    if kind == INCOMING and len(message) == 2:
        return Request(INCOMING, account=_bytes(message[1]))
    if kind == PURSE and len(message) == 3:
        return Request(PURSE, account=_bytes(message[1]), start=_uint(message[2]))
    raise DecodeError("unknown bank request")


def parse_batch_answer(
    message: list[object], count: int
) -> tuple[list[list[object]], bytes | None]:
    """The per-item answers of a SIGN_BATCH answer (``count`` of them) and the batch
    signature over the root of the vote tree of its VOTE items (``None`` without any).

    A VOTE item of a batch answer is ``[0, validator, position]``, positions 0, 1, ...
    in item order: the leaf of the vote tree (``votes.vote_tree``) that holds it.
    """
    if len(message) != 3 or message[0] != SIGN_BATCH or type(message[1]) is not list:
        raise DecodeError("expected a SIGN_BATCH answer")
    answers, signature = message[1], message[2]
    if len(answers) != count or not all(type(a) is list and a for a in answers):
        raise DecodeError("a SIGN_BATCH answer has one answer per item")
    votes = 0
    for answer in answers:
        if answer[0] == VOTE:
            if len(answer) != 3 or type(answer[1]) is not int or type(answer[2]) is not int:
                raise DecodeError("a batch VOTE is [0, validator, position]")
            if answer[2] != votes:
                raise DecodeError("batch VOTE positions must be 0, 1, ... in item order")
            votes += 1
    if (signature is None) != (votes == 0) or not (
        signature is None or (type(signature) is bytes and len(signature) == 64)
    ):
        raise DecodeError("a SIGN_BATCH answer with votes carries one 64-byte signature")
    return [list(answer) for answer in answers], signature


def parse_certificates(message: list[object]) -> list[Certificate]:
    """A RANGE answer's certificates."""
    if len(message) != 2 or message[0] != RANGE or type(message[1]) is not list:
        raise DecodeError("expected a RANGE answer")
    if len(message[1]) > MAX_RANGE:
        raise DecodeError("too many certificates in a RANGE answer")
    return [Certificate.from_value(value) for value in message[1]]


def parse_heads(message: list[object]) -> list[tuple[bytes, int, bytes, int]]:
    if len(message) != 2 or message[0] != HEADS or type(message[1]) is not list:
        raise DecodeError("expected a HEADS answer")
    if len(message[1]) > MAX_HEADS:
        raise DecodeError("too many heads")
    heads = []
    for item in message[1]:
        if type(item) is not list or len(item) != 4:
            raise DecodeError("a head is [account, sequence, hash, balance]")
        account, sequence, head_hash, balance = item
        heads.append((_bytes(account), _uint(sequence), _bytes(head_hash), _uint(balance)))
    return heads


@dataclass(frozen=True, slots=True)
class PurseStatus:
    """A validator's view of a purse and its owner (the PURSE answer)."""

    owner: bytes
    owner_sequence: int  # the owner's certified head
    next_claim_index: int  # the index the next claim on the owner must carry
    claimable: int  # what a claim judged at ``owner_sequence`` may take at most now
    remaining: int
    refunded: bool
    redeemed: Spend | None  # the spend redeemed at the asked index

    def to_value(self) -> list[object]:
        return [
            self.owner,
            self.owner_sequence,
            self.next_claim_index,
            self.claimable,
            self.remaining,
            self.refunded,
            None if self.redeemed is None else [self.redeemed.body(), self.redeemed.signature],
        ]


def parse_purse_status(message: list[object]) -> PurseStatus | None:
    if len(message) != 2 or message[0] != PURSE:
        raise DecodeError("expected a PURSE answer")
    if message[1] is None:
        return None
    value = message[1]
    if type(value) is not list or len(value) != 7:
        raise DecodeError("a purse status has 7 fields")
    owner, sequence, next_index, claimable, remaining, refunded, redeemed = value
    if type(refunded) is not bool:
        raise DecodeError("bad purse status")
    return PurseStatus(
        _bytes(owner),
        _uint(sequence),
        _uint(next_index),
        _uint(claimable),
        _uint(remaining),
        refunded,
        None if redeemed is None else Spend.from_value(redeemed),
    )
