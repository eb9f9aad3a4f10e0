"""Full membership of the SSN federation: SWIM-style failure detection, sans-I/O.

SSNs keep a complete member list (thousands of SSNs carry 100 million users, so full
membership is cheap) and find out who died without a central monitor, as in SWIM (Das,
Gupta, Motivala, 2002) with the suspicion mechanism and incarnation numbers:

- Each protocol period an SSN probes one member, taken round-robin from a shuffled list:
  a ``PING`` that must be answered by an ``ACK`` within ``ack_timeout``. Failing that it
  asks ``indirect_probes`` other members to probe the target for it (``PING_REQ``); any
  ``ACK`` that comes back before the period ends clears the target.
- A target that stays silent is only *suspected*. The suspicion travels with the other
  updates; the suspect refutes it by raising its own incarnation number and announcing
  itself alive. Only a suspicion that outlives ``suspicion_timeout`` (a few periods,
  growing with log(N)) turns into ``DEAD``. So one missed probe of a slow SSN does not
  remove it.
- Updates ride piggy-back on every message and on ``GOSSIP`` messages sent every
  ``gossip_interval`` to ``gossip_fanout`` random members while there is news, each
  update retransmitted ``retransmit_multiplier * ceil(log10(N + 1))`` times; a periodic
  push-pull ``SYNC`` of the whole list with a random member repairs anything the gossip
  missed (and is how a new SSN joins). After refuting, a member adds its own record to
  every message for a suspicion timeout, and whoever writes to a suspect tells it.

Merging is a lattice: an update wins when its ``(incarnation, state rank)`` is higher
(alive < suspect < dead < left at equal incarnation; a higher incarnation beats any state
of a lower one). Any delivery order therefore ends in the same view. Only the member
itself raises its incarnation.

Wire format (canonical CBOR, ``neonet.core.cbor``), version 1::

    [1, 0, seq, updates]              PING
    [1, 1, seq, updates]              ACK
    [1, 2, seq, target_id, updates]   PING_REQ: probe target_id, ACK me with seq
    [1, 3, is_reply, updates]         SYNC: the sender's whole view (a reply is not answered)
    [1, 4, 0, updates]                GOSSIP: updates only, not answered
    update = [state, member_id, incarnation, address, region]

The engine takes bytes with the authenticated sender's ID, the time and a random source,
and returns what to send; it never touches a clock, a socket or ``random``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from neonet.core import cbor
from neonet.core.errors import DecodeError, LocalProtocolError, RemoteProtocolError

VERSION = 1
MAX_MEMBER_ID_LENGTH = 128
MAX_ADDRESS_LENGTH = 512
MAX_REGION_LENGTH = 64
MAX_INCARNATION = (1 << 63) - 1
MAX_SEQUENCE = (1 << 63) - 1


class RandomSource(Protocol):
    """The part of ``random.Random`` the engine uses (the caller owns the generator)."""

    def randrange(self, stop: int) -> int: ...


class MemberState(IntEnum):
    """A member's state; the value is its rank when two updates share an incarnation."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


class MessageKind(IntEnum):
    PING = 0
    ACK = 1
    PING_REQ = 2
    SYNC = 3
    GOSSIP = 4


@dataclass(frozen=True, slots=True)
class Member:
    """What the federation knows about one SSN."""

    member_id: bytes
    address: str
    region: str
    incarnation: int
    state: MemberState

    def outranks(self, other: Member) -> bool:
        """True when this update replaces ``other`` (same member) in every view."""
        return (self.incarnation, self.state) > (other.incarnation, other.state)

    @property
    def live(self) -> bool:
        return self.state in (MemberState.ALIVE, MemberState.SUSPECT)


# --- events (what changed in our view) ---------------------------------------------
@dataclass(frozen=True, slots=True)
class MemberJoined:
    member: Member


@dataclass(frozen=True, slots=True)
class MemberSuspected:
    member: Member


@dataclass(frozen=True, slots=True)
class MemberRecovered:
    """A suspect refuted the suspicion (or a dead member came back with a new incarnation)."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberDied:
    member: Member


@dataclass(frozen=True, slots=True)
class MemberLeft:
    member: Member


MembershipEvent = MemberJoined | MemberSuspected | MemberRecovered | MemberDied | MemberLeft


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Bytes to deliver to ``to``; ``address`` is None when we have never learnt it (answer
    on the connection the request came from)."""

    to: bytes
    address: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    protocol_period: float = 1.0
    ack_timeout: float = 0.4
    indirect_probes: int = 3
    suspicion_multiplier: float = 5.0
    retransmit_multiplier: int = 4
    max_piggyback: int = 16
    gossip_interval: float = 0.2
    gossip_fanout: int = 3
    sync_interval: float = 20.0
    dead_retention: float = 120.0
    max_members: int = 10_000
    max_message_size: int = 1 << 20
    max_local_health: int = 8

    def __post_init__(self) -> None:
        if not 0 < self.ack_timeout < self.protocol_period:
            raise ValueError("ack_timeout must be positive and shorter than protocol_period")
        if self.gossip_interval <= 0 or self.gossip_fanout < 1:
            raise ValueError("gossip_interval must be positive and gossip_fanout >= 1")
        if self.indirect_probes < 0 or self.max_piggyback < 1 or self.max_members < 1:
            raise ValueError("indirect_probes >= 0, max_piggyback >= 1, max_members >= 1")
        if self.suspicion_multiplier <= 0 or self.retransmit_multiplier < 1:
            raise ValueError("suspicion_multiplier > 0 and retransmit_multiplier >= 1")


# --- codec --------------------------------------------------------------------------
def _encode_update(member: Member) -> list[object]:
    return [
        int(member.state),
        member.member_id,
        member.incarnation,
        member.address,
        member.region,
    ]


def _decode_update(value: object) -> Member:
    if not isinstance(value, list) or len(value) != 5:
        raise DecodeError("membership update must be a 5-item array")
    state, member_id, incarnation, address, region = value
    if not isinstance(state, int) or isinstance(state, bool) or not 0 <= state <= 3:
        raise DecodeError("membership update has an unknown state")
    if not isinstance(member_id, bytes) or not 0 < len(member_id) <= MAX_MEMBER_ID_LENGTH:
        raise DecodeError("membership update has a bad member ID")
    if (
        not isinstance(incarnation, int)
        or isinstance(incarnation, bool)
        or not 0 <= incarnation <= MAX_INCARNATION
    ):
        raise DecodeError("membership update has a bad incarnation")
    if not isinstance(address, str) or len(address) > MAX_ADDRESS_LENGTH:
        raise DecodeError("membership update has a bad address")
    if not isinstance(region, str) or len(region) > MAX_REGION_LENGTH:
        raise DecodeError("membership update has a bad region")
    return Member(member_id, address, region, incarnation, MemberState(state))


@dataclass(frozen=True, slots=True)
class Message:
    kind: MessageKind
    seq: int = 0
    target: bytes | None = None
    is_reply: bool = False
    updates: tuple[Member, ...] = ()


def encode_message(message: Message) -> bytes:
    updates = [_encode_update(m) for m in message.updates]
    if message.kind is MessageKind.PING_REQ:
        body: list[object] = [VERSION, int(message.kind), message.seq, message.target, updates]
    elif message.kind is MessageKind.SYNC:
        body = [VERSION, int(message.kind), message.is_reply, updates]
    else:
        body = [VERSION, int(message.kind), message.seq, updates]
    return cbor.encode(body)


def decode_message(data: bytes, *, max_size: int = 1 << 20, max_updates: int = 10_000) -> Message:
    """Decode one membership message; ``DecodeError`` (a ``RemoteProtocolError``) if bad."""
    if len(data) > max_size:
        raise DecodeError(f"membership message of {len(data)} bytes exceeds {max_size}")
    value = cbor.decode(data)
    if not isinstance(value, list) or len(value) < 4:
        raise DecodeError("membership message must be an array of at least 4 items")
    if value[0] != VERSION or isinstance(value[0], bool):
        raise DecodeError(f"unsupported membership version {value[0]!r}")
    kind_value = value[1]
    if not isinstance(kind_value, int) or isinstance(kind_value, bool) or not 0 <= kind_value <= 4:
        raise DecodeError(f"unknown membership message kind {kind_value!r}")
    kind = MessageKind(kind_value)
    expected = 5 if kind is MessageKind.PING_REQ else 4
    if len(value) != expected:
        raise DecodeError(f"{kind.name} must have {expected} items")
    raw_updates = value[-1]
    if not isinstance(raw_updates, list) or len(raw_updates) > max_updates:
        raise DecodeError("membership updates must be an array within the member limit")
    updates = tuple(_decode_update(u) for u in raw_updates)
    if kind is MessageKind.SYNC:
        if not isinstance(value[2], bool):
            raise DecodeError("SYNC reply flag must be a boolean")
        return Message(kind, is_reply=value[2], updates=updates)
    seq = value[2]
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQUENCE:
        raise DecodeError("membership sequence number out of range")
    if kind is not MessageKind.PING_REQ:
        return Message(kind, seq=seq, updates=updates)
    target = value[3]
    if not isinstance(target, bytes) or not 0 < len(target) <= MAX_MEMBER_ID_LENGTH:
        raise DecodeError("PING_REQ has a bad target")
    return Message(kind, seq=seq, target=target, updates=updates)


# --- engine -------------------------------------------------------------------------
@dataclass(slots=True)
class _Probe:
    target: bytes
    seq: int
    started: float
    indirect_sent: bool = False
    acked: bool = False


@dataclass(slots=True)
class _Forward:
    """A PING we sent on behalf of ``requester`` (its PING_REQ carried ``requester_seq``)."""

    requester: bytes
    requester_seq: int
    deadline: float


@dataclass(slots=True)
class _Broadcast:
    update: Member
    transmits_left: int


@dataclass(slots=True)
class _Record:
    member: Member
    changed_at: float
    suspicion_deadline: float | None = None


class Membership:
    """One SSN's view of the federation.

    Feed it ``receive(sender, data, now)`` for every membership message and
    ``handle_timer(now)`` when ``next_timer()`` is due; send what ``data_to_send()``
    returns and read ``events()``. ``admit(member_id)`` (optional) decides which member
    IDs may join at all, e.g. those on the operator-signed list.
    """

    def __init__(
        self,
        member_id: bytes,
        address: str,
        region: str,
        *,
        now: float,
        rng: RandomSource,
        config: MembershipConfig | None = None,
        admit: Callable[[bytes], bool] | None = None,
        incarnation: int = 0,
    ) -> None:
        self.config = config or MembershipConfig()
        self._rng = rng
        self._admit = admit
        self.local = Member(member_id, address, region, incarnation, MemberState.ALIVE)
        self._records: dict[bytes, _Record] = {}
        self._live_others = 0  # records that are alive or suspect, kept in step by _apply
        self._broadcasts: dict[bytes, _Broadcast] = {}
        self._outgoing: list[Outgoing] = []
        self._events: list[MembershipEvent] = []
        self._probe_order: list[bytes] = []
        self._probe: _Probe | None = None
        self._forwards: dict[int, _Forward] = {}
        self._next_seq = 1
        # Lifeguard's local health: grows when our own probes fail or we are suspected, and
        # stretches our probe timing, so an overloaded SSN stops accusing healthy ones.
        self.local_health = 0
        self._announce_self_until = now  # after a refutation, every message carries it
        self._now = now
        self._next_probe_at = now
        self._next_sync_at = now + self.config.sync_interval
        self._next_gossip_at = now
        self._queue_broadcast(self.local)

    # --- views ----------------------------------------------------------------------
    def member(self, member_id: bytes) -> Member | None:
        if member_id == self.local.member_id:
            return self.local
        record = self._records.get(member_id)
        return record.member if record is not None else None

    def members(self) -> list[Member]:
        """Every member we know of, ourselves included, dead ones until they are forgotten."""
        return [self.local, *(r.member for r in self._records.values())]

    def live_members(self) -> list[Member]:
        """Alive and suspected members, ourselves included (suspects still own records)."""
        return [self.local, *(r.member for r in self._records.values() if r.member.live)]

    # --- driving --------------------------------------------------------------------
    def join(self, seeds: Iterable[tuple[bytes, str]], now: float) -> None:
        """Push our view to each seed ``(member_id, address)``; their replies bring theirs."""
        for seed_id, address in seeds:
            if seed_id != self.local.member_id:
                self._send_sync(seed_id, address, is_reply=False)

    def leave(self, now: float) -> None:
        """Announce a graceful departure (sent with the next messages and to a few members)."""
        self.local = Member(
            self.local.member_id,
            self.local.address,
            self.local.region,
            self.local.incarnation,
            MemberState.LEFT,
        )
        self._queue_broadcast(self.local)
        for member in self._random_live(self.config.indirect_probes + 1, exclude=()):
            self._send(member.member_id, Message(MessageKind.PING, seq=self._new_seq()))

    def data_to_send(self) -> list[Outgoing]:
        out, self._outgoing = self._outgoing, []
        return out

    def events(self) -> list[MembershipEvent]:
        out, self._events = self._events, []
        return out

    def _scaled(self, seconds: float) -> float:
        return seconds * (1 + self.local_health)

    def _adjust_health(self, delta: int) -> None:
        self.local_health = min(self.config.max_local_health, max(0, self.local_health + delta))

    def next_timer(self) -> float:
        deadlines = [self._next_sync_at]
        if self._broadcasts:
            deadlines.append(self._next_gossip_at)
        if self._probe is None:
            deadlines.append(self._next_probe_at)
        else:
            probe = self._probe
            if not probe.acked and not probe.indirect_sent:
                deadlines.append(probe.started + self._scaled(self.config.ack_timeout))
            deadlines.append(probe.started + self._scaled(self.config.protocol_period))
        deadlines.extend(
            r.suspicion_deadline for r in self._records.values() if r.suspicion_deadline is not None
        )
        deadlines.extend(f.deadline for f in self._forwards.values())
        return min(deadlines)

    def handle_timer(self, now: float) -> None:
        self._now = now
        config = self.config
        probe = self._probe
        if probe is not None:
            if (
                not probe.acked
                and not probe.indirect_sent
                and now >= probe.started + self._scaled(config.ack_timeout)
            ):
                probe.indirect_sent = True
                helpers = self._random_live(config.indirect_probes, exclude=(probe.target,))
                for helper in helpers:
                    self._send(
                        helper.member_id,
                        Message(MessageKind.PING_REQ, seq=probe.seq, target=probe.target),
                    )
            if now >= probe.started + self._scaled(config.protocol_period):
                self._probe = None
                if probe.acked:
                    self._adjust_health(-1)
                else:
                    self._adjust_health(+1)
                    self._suspect(probe.target, now)
        if self._probe is None and now >= self._next_probe_at:
            self._start_probe(now)
            self._next_probe_at = now + self._scaled(config.protocol_period)
        for member_id, record in list(self._records.items()):
            if record.suspicion_deadline is not None and now >= record.suspicion_deadline:
                self._declare_dead(member_id, record, now)
            elif not record.member.live and now >= record.changed_at + config.dead_retention:
                del self._records[member_id]
        for seq, forward in list(self._forwards.items()):
            if now >= forward.deadline:
                del self._forwards[seq]
        if self._broadcasts and now >= self._next_gossip_at:
            self._next_gossip_at = now + config.gossip_interval
            for member in self._random_live(config.gossip_fanout, exclude=(), suspects=True):
                self._send(member.member_id, Message(MessageKind.GOSSIP))
                if not self._broadcasts:
                    break
        if now >= self._next_sync_at:
            self._next_sync_at = now + config.sync_interval
            for member in self._random_live(1, exclude=()):
                self._send_sync(member.member_id, member.address, is_reply=False)

    def receive(self, sender: bytes, data: bytes, now: float) -> None:
        """Handle one message from the (authenticated) member ``sender``.

        Raises ``RemoteProtocolError`` for a malformed message; the view is then unchanged.
        """
        self._now = now
        message = decode_message(
            data,
            max_size=self.config.max_message_size,
            max_updates=self.config.max_members,
        )
        if message.kind is not MessageKind.SYNC and len(message.updates) > 4 * (
            self.config.max_piggyback
        ):
            raise RemoteProtocolError("too many piggy-backed membership updates")
        for update in message.updates:
            self._apply(update, now)
        if message.kind is MessageKind.PING:
            self._send(sender, Message(MessageKind.ACK, seq=message.seq))
        elif message.kind is MessageKind.ACK:
            self._on_ack(sender, message.seq)
        elif message.kind is MessageKind.PING_REQ:
            assert message.target is not None
            if message.target == self.local.member_id:
                self._send(sender, Message(MessageKind.ACK, seq=message.seq))
            elif self.member(message.target) is not None:
                seq = self._new_seq()
                self._forwards[seq] = _Forward(
                    sender, message.seq, now + self.config.protocol_period
                )
                self._send(message.target, Message(MessageKind.PING, seq=seq))
        elif message.kind is MessageKind.SYNC and not message.is_reply:
            record = self._records.get(sender)
            address = record.member.address if record is not None else None
            self._send_sync(sender, address, is_reply=True)

    # --- internals ------------------------------------------------------------------
    def _new_seq(self) -> int:
        seq = self._next_seq
        self._next_seq = seq + 1 if seq < MAX_SEQUENCE else 1
        return seq

    def _on_ack(self, sender: bytes, seq: int) -> None:
        probe = self._probe
        if probe is not None and probe.seq == seq:
            probe.acked = True
            return
        forward = self._forwards.pop(seq, None)
        if forward is not None and sender != forward.requester:
            self._send(forward.requester, Message(MessageKind.ACK, seq=forward.requester_seq))

    def _start_probe(self, now: float) -> None:
        while self._probe_order:
            target = self._probe_order.pop()
            record = self._records.get(target)
            if record is not None and record.member.live:
                self._probe = _Probe(target, self._new_seq(), now)
                self._send(target, Message(MessageKind.PING, seq=self._probe.seq))
                return
        candidates = [m for m, r in self._records.items() if r.member.live]
        if not candidates:
            return
        # A new round: visit every member once, in a fresh random order (Fisher-Yates).
        for i in range(len(candidates) - 1, 0, -1):
            j = self._rng.randrange(i + 1)
            candidates[i], candidates[j] = candidates[j], candidates[i]
        self._probe_order = candidates
        self._start_probe(now)

    def _random_live(
        self, count: int, *, exclude: Iterable[bytes], suspects: bool = False
    ) -> list[Member]:
        excluded = set(exclude)
        wanted = (MemberState.ALIVE, MemberState.SUSPECT) if suspects else (MemberState.ALIVE,)
        pool = [
            r.member
            for m, r in self._records.items()
            if r.member.state in wanted and m not in excluded
        ]
        chosen: list[Member] = []
        while pool and len(chosen) < count:
            chosen.append(pool.pop(self._rng.randrange(len(pool))))
        return chosen

    def _suspicion_timeout(self) -> float:
        scale = max(1.0, math.log10(self._live_others + 1))
        return self.config.suspicion_multiplier * scale * self.config.protocol_period

    def _retransmit_limit(self) -> int:
        live = self._live_others + 1
        return self.config.retransmit_multiplier * max(1, math.ceil(math.log10(live + 1)))

    def _suspect(self, member_id: bytes, now: float) -> None:
        record = self._records.get(member_id)
        if record is None or record.member.state is not MemberState.ALIVE:
            return
        old = record.member
        update = Member(
            old.member_id, old.address, old.region, old.incarnation, MemberState.SUSPECT
        )
        self._apply(update, now)
        # Tell the suspect at once, so it can refute before the suspicion times out.
        self._send(member_id, Message(MessageKind.PING, seq=self._new_seq()))

    def _declare_dead(self, member_id: bytes, record: _Record, now: float) -> None:
        old = record.member
        update = Member(old.member_id, old.address, old.region, old.incarnation, MemberState.DEAD)
        self._apply(update, now)

    def _apply(self, update: Member, now: float) -> None:
        if update.member_id == self.local.member_id:
            if update.state is not MemberState.ALIVE and update.incarnation >= (
                self.local.incarnation
            ):
                if self.local.state is MemberState.LEFT:
                    return
                if update.incarnation >= MAX_INCARNATION:
                    raise RemoteProtocolError("incarnation number exhausted")
                # Refute: only we may raise our incarnation. Being suspected is also a sign
                # that we may be the slow one.
                self._adjust_health(+1)
                self.local = Member(
                    self.local.member_id,
                    self.local.address,
                    self.local.region,
                    update.incarnation + 1,
                    MemberState.ALIVE,
                )
                self._queue_broadcast(self.local)
                self._announce_self_until = now + self._suspicion_timeout()
            return
        record = self._records.get(update.member_id)
        if record is None:
            if self._admit is not None and not self._admit(update.member_id):
                return
            if len(self._records) + 1 >= self.config.max_members:
                return
            # A death of someone we never knew is kept as a tombstone too, so that an older
            # "alive" arriving later cannot resurrect it.
            record = _Record(update, now)
            self._records[update.member_id] = record
            if update.live:
                self._live_others += 1
                self._events.append(MemberJoined(update))
        elif update.outranks(record.member):
            previous = record.member
            self._live_others += int(update.live) - int(previous.live)
            record.member = update
            record.changed_at = now
            if update.state is MemberState.ALIVE and previous.state is not MemberState.ALIVE:
                self._events.append(MemberRecovered(update))
            elif update.state is MemberState.SUSPECT and previous.state is not MemberState.SUSPECT:
                self._events.append(MemberSuspected(update))
            elif update.state is MemberState.DEAD and previous.live:
                self._events.append(MemberDied(update))
            elif update.state is MemberState.LEFT and previous.state is not MemberState.LEFT:
                self._events.append(MemberLeft(update))
        else:
            return
        record.suspicion_deadline = (
            now + self._suspicion_timeout() if update.state is MemberState.SUSPECT else None
        )
        self._queue_broadcast(update)

    def _queue_broadcast(self, update: Member) -> None:
        self._broadcasts[update.member_id] = _Broadcast(update, self._retransmit_limit())

    def _piggyback(self, to: bytes) -> tuple[Member, ...]:
        chosen = sorted(self._broadcasts.values(), key=lambda b: b.transmits_left, reverse=True)[
            : self.config.max_piggyback
        ]
        for broadcast in chosen:
            broadcast.transmits_left -= 1
            if broadcast.transmits_left <= 0:
                del self._broadcasts[broadcast.update.member_id]
        updates = [b.update for b in chosen]
        if self._now < self._announce_self_until and self.local not in updates:
            updates = [self.local, *updates[: self.config.max_piggyback - 1]]
        record = self._records.get(to)
        suspect = record is not None and record.member.state is MemberState.SUSPECT
        if suspect and record is not None and record.member not in updates:
            # Whoever talks to a suspect tells it, whatever the retransmit budget says.
            updates = [record.member, *updates[: self.config.max_piggyback - 1]]
        return tuple(updates)

    def _send(self, to: bytes, message: Message) -> None:
        full = Message(
            message.kind,
            seq=message.seq,
            target=message.target,
            is_reply=message.is_reply,
            updates=self._piggyback(to),
        )
        record = self._records.get(to)
        address = record.member.address if record is not None else None
        self._outgoing.append(Outgoing(to, address, encode_message(full)))

    def _send_sync(self, to: bytes, address: str | None, *, is_reply: bool) -> None:
        view = tuple(self.members())
        message = Message(MessageKind.SYNC, is_reply=is_reply, updates=view)
        data = encode_message(message)
        if len(data) > self.config.max_message_size:
            raise LocalProtocolError("membership view too large for one SYNC message")
        self._outgoing.append(Outgoing(to, address, data))


__all__ = [
    "Member",
    "MemberDied",
    "MemberJoined",
    "MemberLeft",
    "MemberRecovered",
    "MemberState",
    "MemberSuspected",
    "Membership",
    "MembershipConfig",
    "MembershipEvent",
    "Message",
    "MessageKind",
    "Outgoing",
    "RandomSource",
    "decode_message",
    "encode_message",
]
