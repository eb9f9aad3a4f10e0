"""The sending SSN's per-read signal path: SIGNAL frames in, FORWARD frames out.

ARCHITECTURE.md, "The SSN": a signal from a client to a peer registered at another SSN
travels as client SIGNAL -> federation FORWARD -> FORWARDED -> client SIGNAL_SENT
(``neonet.proto.ssn.client_protocol`` and ``federation``; frames of ``ssn_wire``).

``SignalRouter`` does the sending SSN's share of that per read, not per message:

- ``route(stream, sender, bodies, budget, now)``: the frame bodies of one read of a
  client's stream. Each SIGNAL to a peer with a route (``set_route(peer, member)``) whose
  SSN has an open link (``open_link(member, link)``) becomes a FORWARD frame, with a fresh
  request ID above 2**62 (the caller's own federation requests use 1 to 2**62) and a
  pending record (deadline ``now + timeout``), at most ``budget`` of them (the caller's
  free request slots and rate tokens) and while fewer than ``max_pending`` are pending.
  Only the PREFIX of the read up to the first frame it does not take (another message,
  an unknown peer, a payload over ``max_payload``, a frame the parser does not accept,
  the budget spent): that frame and all after it are the rest, so that the per-frame
  path sees them in the order they came (a LOOKUP keeps its place for rate tokens and
  request slots; nothing after a malformed frame takes effect before the stream closes).
  Returns ``(forwards, rest, taken)``: one blob of FORWARD frames per link (in order of
  first use), the bodies not taken (the caller's own bytes objects, in order), and how
  many SIGNALs were taken.
- ``answer(link, bodies)``: the frame bodies of one read of a federation link. FORWARDED
  answers to our pending FORWARDs on that link become SIGNAL_SENT frames, one blob per
  client stream with its count: ``(answers, rest)``.
- ``deliver(bodies)``, the receiving SSN's share: the FORWARD frames of one read of a
  federation stream grouped by recipient (in order of first appearance), each group
  ``(to, INCOMING frames, FORWARDED (DELIVERED) answers, indices of its FORWARDs)`` for
  the caller to send when that recipient's stream takes them now; and the bodies not
  taken: from the first one that is not a FORWARD it takes (another message, a payload
  over ``max_payload``, a frame the parser refuses) on, as in ``route``.
- ``take(link, rid)`` (an answer that came another way, e.g. a federation ERROR),
  ``expire(now)``, ``close_link(link)``: the pending FORWARDs taken out as
  ``(stream, rid, to, payload)``, for the caller's slow path.

Sans-I/O: no clock, no I/O; the caller passes ``now``. Pure twin of
``neonet._native.SignalRouter`` (crates/neonet-core ``signal_router.rs``): same results,
same error types, and the same texts for ValueError/LimitExceededError (the texts of the
argument conversions' TypeError/OverflowError are PyO3's there; a differential test drives
both and compares types only for those).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Protocol

from neonet.core.errors import LimitExceededError
from neonet.core.ssn_wire import (
    _MAX_BLOB,
    _MAX_REQUEST_ID,
    _is_peer_id,
    encode_forward,
    encode_incoming,
    encode_status,
    parse_signal_path,
)

__all__ = ["FIRST_ID", "Delivery", "Failed", "SignalRouter", "SignalRouterInterface"]

FIRST_ID = (1 << 62) + 1
_U64 = 1 << 64

# (client stream, the client's request ID, to, payload)
Failed = tuple[int, int, bytes, bytes]
# (to, its INCOMING frames, the FORWARDED answers, indices of those FORWARDs in the read)
Delivery = tuple[bytes, bytes, bytes, list[int]]


class SignalRouterInterface(Protocol):
    """What both backends' ``SignalRouter`` offer (see the module docstring)."""

    @property
    def routes(self) -> int: ...
    def __len__(self) -> int: ...
    def set_route(self, peer: bytes, member: int) -> None: ...
    def drop_route(self, peer: bytes) -> None: ...
    def open_link(self, member: int, link: int) -> None: ...
    def close_link(self, link: int) -> list[Failed]: ...
    def route(
        self, stream: int, sender: bytes, bodies: Sequence[bytes], budget: int, now: float
    ) -> tuple[list[tuple[int, bytes]], list[bytes], int]: ...
    def answer(
        self, link: int, bodies: Sequence[bytes]
    ) -> tuple[list[tuple[int, bytes, int]], list[bytes]]: ...
    def deliver(self, bodies: Sequence[bytes]) -> tuple[list[Delivery], list[bytes]]: ...
    def take(self, link: int, rid: int) -> Failed | None: ...
    def expire(self, now: float) -> list[Failed]: ...


def _u64(value: object) -> int:
    """An integer argument as the native binding converts it (u64 / usize)."""
    if not isinstance(value, int):
        raise TypeError(f"'{type(value).__name__}' object cannot be interpreted as an integer")
    if not 0 <= value < _U64:
        raise OverflowError("out of range integral type conversion attempted")
    return value


def _f64(value: object) -> float:
    """A float argument as the native binding converts it (``PyFloat_AsDouble``: a float,
    else ``__float__``, else ``__index__``; so a Decimal or Fraction is taken too)."""
    if isinstance(value, float):
        return value
    kind = type(value)
    if hasattr(kind, "__float__"):
        return float(value)  # type: ignore[arg-type]
    if hasattr(kind, "__index__"):
        return float(operator.index(value))  # type: ignore[arg-type]
    raise TypeError(f"must be real number, not {kind.__name__}")


def _bytes(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"bytes required, not {type(value).__name__}")
    return value


def _bodies(value: object) -> list[bytes]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"a sequence of bytes is required, not {type(value).__name__}")
    return [_bytes(body) for body in value]


class SignalRouter:
    """See the module docstring."""

    __slots__ = (
        "_links",
        "_max_payload",
        "_max_pending",
        "_max_routes",
        "_next_id",
        "_pending",
        "_routes",
        "_timeout",
    )

    def __init__(self, max_payload: int, timeout: float, max_pending: int, max_routes: int) -> None:
        max_payload, timeout = _u64(max_payload), _f64(timeout)
        max_pending, max_routes = _u64(max_pending), _u64(max_routes)
        if max_payload > _MAX_BLOB:
            raise ValueError("max_payload exceeds 65536")
        if not (timeout > 0.0 and timeout != float("inf")):
            raise ValueError("timeout must be positive")
        if max_pending == 0 or max_routes == 0:
            raise ValueError("max_pending and max_routes must be at least 1")
        self._max_payload = max_payload
        self._timeout = timeout
        self._max_pending = max_pending
        self._max_routes = max_routes
        self._routes: dict[bytes, int] = {}
        self._links: dict[int, int] = {}
        # FORWARD ID -> (link, deadline, failed record), oldest first
        self._pending: dict[int, tuple[int, float, Failed]] = {}
        self._next_id = FIRST_ID

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def routes(self) -> int:
        return len(self._routes)

    def set_route(self, peer: bytes, member: int) -> None:
        peer, member = _bytes(peer), _u64(member)
        if not _is_peer_id(peer):
            raise ValueError("not a peer ID")
        if len(self._routes) >= self._max_routes and peer not in self._routes:
            raise LimitExceededError(f"{self._max_routes} routes already held")
        self._routes[peer] = member

    def drop_route(self, peer: bytes) -> None:
        self._routes.pop(_bytes(peer), None)

    def open_link(self, member: int, link: int) -> None:
        self._links[_u64(member)] = _u64(link)

    def close_link(self, link: int) -> list[Failed]:
        link = _u64(link)
        self._links = {member: open_ for member, open_ in self._links.items() if open_ != link}
        ids = [rid for rid, entry in self._pending.items() if entry[0] == link]
        return [self._pending.pop(rid)[2] for rid in ids]

    def _new_id(self) -> int:
        while True:
            rid = self._next_id
            self._next_id = FIRST_ID if rid >= _MAX_REQUEST_ID else rid + 1
            if rid not in self._pending:
                return rid

    def route(
        self, stream: int, sender: bytes, bodies: Sequence[bytes], budget: int, now: float
    ) -> tuple[list[tuple[int, bytes]], list[bytes], int]:
        stream, sender = _u64(stream), _bytes(sender)
        items, budget, now = _bodies(bodies), _u64(budget), _f64(now)
        if len(sender) > _MAX_BLOB:
            raise ValueError("byte string too long")
        forwards: dict[int, bytearray] = {}
        rest: list[bytes] = []
        taken = 0
        routes, links, pending = self._routes, self._links, self._pending
        for index, body in enumerate(items):
            fields = parse_signal_path(body, False)
            link = None
            if (
                fields is not None
                and fields[0] == 5
                and taken < budget
                and len(fields[3]) <= self._max_payload
                and len(pending) < self._max_pending
            ):
                member = routes.get(fields[2])
                if member is not None:
                    link = links.get(member)
            if link is None:
                rest = items[index:]  # (only a prefix: the rest keeps its order)
                break
            assert fields is not None
            _, rid, to, payload = fields
            forward_id = self._new_id()
            frame = encode_forward(forward_id, sender, to, payload)
            blob = forwards.get(link)
            if blob is None:
                forwards[link] = bytearray(frame)
            else:
                blob += frame
            pending[forward_id] = (link, now + self._timeout, (stream, rid, to, payload))
            taken += 1
        return [(link, bytes(blob)) for link, blob in forwards.items()], rest, taken

    def answer(
        self, link: int, bodies: Sequence[bytes]
    ) -> tuple[list[tuple[int, bytes, int]], list[bytes]]:
        link, items = _u64(link), _bodies(bodies)
        answers: dict[int, tuple[bytearray, list[int]]] = {}
        rest: list[bytes] = []
        pending = self._pending
        for body in items:
            fields = parse_signal_path(body, True)
            entry = None
            if fields is not None and fields[0] == 5:
                entry = pending.get(fields[1])
                if entry is not None and entry[0] == link:
                    del pending[fields[1]]
                else:
                    entry = None
            if entry is None:
                rest.append(body)
                continue
            assert fields is not None
            stream, rid = entry[2][0], entry[2][1]
            frame = encode_status(False, rid, fields[2])
            answer = answers.get(stream)
            if answer is None:
                answers[stream] = (bytearray(frame), [1])
            else:
                answer[0].extend(frame)
                answer[1][0] += 1
        return [(stream, bytes(blob), n[0]) for stream, (blob, n) in answers.items()], rest

    def deliver(self, bodies: Sequence[bytes]) -> tuple[list[Delivery], list[bytes]]:
        items = _bodies(bodies)
        deliveries: dict[bytes, tuple[bytearray, bytearray, list[int]]] = {}
        rest: list[bytes] = []
        for index, body in enumerate(items):
            fields = parse_signal_path(body, True)
            if fields is None or fields[0] != 2 or len(fields[4]) > self._max_payload:
                rest = items[index:]  # (only a prefix, as in route)
                break
            _, rid, sender, to, payload = fields
            group = deliveries.get(to)
            if group is None:
                group = deliveries[to] = (bytearray(), bytearray(), [])
            group[0].extend(encode_incoming(sender, payload))
            group[1].extend(encode_status(True, rid, 0))
            group[2].append(index)
        groups = [(to, bytes(a), bytes(b), taken) for to, (a, b, taken) in deliveries.items()]
        return groups, rest

    def take(self, link: int, rid: int) -> Failed | None:
        link, rid = _u64(link), _u64(rid)
        entry = self._pending.get(rid)
        if entry is None or entry[0] != link:
            return None
        del self._pending[rid]
        return entry[2]

    def expire(self, now: float) -> list[Failed]:
        now = _f64(now)
        failed: list[Failed] = []
        pending = self._pending
        while pending:
            rid, (_, deadline, record) = next(iter(pending.items()))
            if deadline > now:
                break
            del pending[rid]
            failed.append(record)
        return failed
