"""The GossipSub router engine (sans-I/O): v1.0, v1.1 and v1.2, with floodsub peers.

Spec sections (libp2p/specs ``pubsub/gossipsub``): v1.0 "Message Processing", "Control
Message Processing", "Heartbeat", "Message Cache"; v1.1 "PRUNE Backoff and Peer
Exchange", "Flood Publishing", "Peer Scoring" and "Score Thresholds" (graylisted
peers' RPCs are ignored; no gossip to or from peers under the gossip threshold; PX
accepted only from peers above ``accept_px_threshold``), "Spam Protection Measures"
(IHAVE/IWANT limits and broken promises, P7); v1.2 "IDONTWANT".

The decisions on mesh, fan-out, seen-cache and message cache come from the core
(``neonet.core.backend``: the Rust classes, or their pure twins). The engine takes
events (a peer joined or left, an RPC arrived, a validation finished, a heartbeat, a
publish) with ``now`` in seconds, and leaves what to do in ``drain()``: RPCs to send
per peer, messages waiting for validation, messages to deliver locally, and peers
learned through peer exchange. Randomness comes from a ``SplitMix64`` seeded by the
caller. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from neonet.core import backend
from neonet.core.errors import LocalProtocolError
from neonet.core.gossip import (
    PROTOCOL_FLOODSUB,
    PROTOCOL_MESHSUB_V10,
    PROTOCOL_MESHSUB_V12,
    GossipParams,
    SplitMix64,
)
from neonet.core.keys import Ed25519Identity
from neonet.proto.gossipsub_rpc import (
    Message,
    MessageIdFunction,
    Prune,
    ReceivedMessage,
    Rpc,
    SignaturePolicy,
    default_message_id,
    sign_message,
    verify_message,
)
from neonet.proto.gossipsub_score import PeerScore, ScoreParams, ScoreThresholds

__all__ = [
    "Delivered",
    "GossipRouter",
    "PendingValidation",
    "RouterConfig",
    "RouterOutput",
    "ValidationResult",
]


class ValidationResult(Enum):
    """A validator's verdict (pubsub "Validation"): only ACCEPT is delivered and forwarded;
    REJECT also penalises the senders (P4); IGNORE drops the message silently."""

    ACCEPT = "accept"
    IGNORE = "ignore"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """Router parameters; the defaults are the spec's (D=6, heartbeat 1 s, mcache 5/3)."""

    gossip: GossipParams = field(default_factory=GossipParams)
    score: ScoreParams | None = field(default_factory=ScoreParams)  # None: no scoring
    thresholds: ScoreThresholds = field(default_factory=ScoreThresholds)
    signature_policy: SignaturePolicy = SignaturePolicy.STRICT_SIGN
    message_id: MessageIdFunction = default_message_id
    heartbeat_interval: float = 1.0
    history_length: int = 5
    history_gossip: int = 3
    seen_ttl: float = 120.0
    seen_capacity: int = 262_144
    mcache_capacity: int = 65_536
    max_message_size: int = 1 << 20  # bytes of data
    gossip_retransmission: int = 3
    max_ihave_length: int = 5_000  # IDs per IHAVE sent, and IDs asked per peer per heartbeat
    max_ihave_messages: int = 10  # IHAVEs from one peer per heartbeat
    iwant_followup_time: float = 3.0
    prune_peers: int = 16  # peer exchange size
    do_px: bool = True
    flood_publish: bool = True
    idontwant_message_size: int = 1_000  # v1.2: only for data at least this large
    idontwant_ttl_heartbeats: int = 3
    max_idontwant_per_peer: int = 10_000
    max_pending_validations: int = 4_096
    max_tracked_deliveries: int = 65_536
    explicit_peers: frozenset[bytes] = frozenset()


@dataclass(frozen=True, slots=True)
class PendingValidation:
    """A new message that the application's validators must judge (``validation_done``)."""

    msg_id: bytes
    message: Message
    source: bytes


@dataclass(frozen=True, slots=True)
class Delivered:
    """A valid message for the local subscribers of its topic."""

    msg_id: bytes
    message: Message
    source: bytes | None  # None for our own messages


@dataclass(slots=True)
class RouterOutput:
    """What the router wants done, taken with ``GossipRouter.drain``."""

    send: dict[bytes, Rpc] = field(default_factory=dict)
    validate: list[PendingValidation] = field(default_factory=list)
    deliver: list[Delivered] = field(default_factory=list)
    px: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class RouterStats:
    """Counters for tests and benchmarks."""

    messages_received: int = 0
    duplicates_received: int = 0
    invalid_received: int = 0
    rpcs_graylisted: int = 0
    messages_forwarded: int = 0
    idontwant_sent: int = 0
    idontwant_suppressed: int = 0
    iwant_sent: int = 0
    iwant_served: int = 0
    validation_overflow: int = 0


_PENDING, _VALID, _INVALID, _IGNORED = range(4)


class _Delivery:
    __slots__ = ("first_seen", "peers", "received", "source", "status", "topic")

    def __init__(
        self, topic: str, source: bytes, now: float, received: ReceivedMessage | None
    ) -> None:
        self.topic = topic
        self.source = source
        self.first_seen = now
        self.status = _PENDING
        self.peers: list[bytes] = [source]  # everyone who sent it (source first)
        self.received = received  # its encoding as it arrived, until forwarded


class _PeerState:
    __slots__ = ("dontwant", "ihave_ids", "ihaves", "protocol")

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.dontwant: dict[bytes, int] = {}  # msg ID -> heartbeat tick when received
        self.ihaves = 0  # IHAVEs received this heartbeat
        self.ihave_ids = 0  # IDs asked for this heartbeat


class GossipRouter:
    """One node's GossipSub router; see the module docstring for the event model."""

    def __init__(
        self,
        identity: Ed25519Identity | None,
        local_peer: bytes,
        config: RouterConfig | None = None,
        *,
        seed: int = 0,
        implementation: backend.Implementation | None = None,
    ) -> None:
        self.config = config = config or RouterConfig()
        if config.signature_policy is SignaturePolicy.STRICT_SIGN and identity is None:
            raise LocalProtocolError("StrictSign needs an identity")
        impl = implementation or backend.ACTIVE
        thresholds = config.thresholds
        params = config.gossip
        if config.score is not None:  # the mesh decides with the scoring thresholds
            params = _with_thresholds(params, thresholds)
        self._identity = identity
        self.local_peer = local_peer
        self.mesh = impl.mesh_state(params)
        self.seen = impl.seen_cache(config.seen_ttl, config.seen_capacity)
        self.mcache = impl.message_cache(
            config.history_length, config.history_gossip, config.mcache_capacity
        )
        self.score = PeerScore(config.score) if config.score is not None else None
        # With the default ID, received copies are identified without decoding them.
        self._fast_id = config.message_id is default_message_id
        # Near-first deliveries only count for P3/P3b; with neither weighted (the
        # default) the ~6 duplicates per message skip the call.
        self._count_near_first = config.score is not None and any(
            params.mesh_deliveries_scored
            for params in (config.score.default_topic, *config.score.topics.values())
            if params is not None
        )
        self._verify_ed25519 = impl.verify_signature
        self.stats = RouterStats()
        self._rng = SplitMix64(seed)
        self._peers: dict[bytes, _PeerState] = {}
        self._subscribed: set[str] = set()
        self._validated_topics: set[str] = set()
        self._deliveries: dict[bytes, _Delivery] = {}
        self._score_cache: dict[bytes, float] = {}
        # IWANT promises: msg ID -> {peer: deadline}; kept when the message arrives in time.
        self._promises: dict[bytes, dict[bytes, float]] = {}
        self._pending = 0
        self._ticks = 0
        self._out = RouterOutput()
        self._seqno = 0
        self._now = 0.0

    # -- output -----------------------------------------------------------------------

    def drain(self) -> RouterOutput:
        """Everything decided since the last call (RPCs merged per peer)."""
        out = self._out
        self._out = RouterOutput()
        return out

    def _rpc(self, peer: bytes) -> Rpc:
        rpc = self._out.send.get(peer)
        if rpc is None:
            rpc = self._out.send[peer] = Rpc()
        return rpc

    def _control_ok(self, peer: bytes) -> bool:
        state = self._peers.get(peer)
        return state is not None and state.protocol != PROTOCOL_FLOODSUB

    def _seed(self) -> int:
        return self._rng.next_u64()

    def _score_of(self, peer: bytes, now: float) -> float:
        # Scores are cached between heartbeats; penalties drop the peer's entry at once,
        # so graylisting is immediate while the rewards (P1, P2) lag by one heartbeat.
        if self.score is None:
            return 0.0
        cached = self._score_cache.get(peer)
        if cached is None:
            cached = self._score_cache[peer] = self.score.score(peer, now)
        return cached

    def _invalid(self, peer: bytes, topic: str) -> None:
        if self.score is not None:
            self.score.invalid_delivery(peer, topic)
            self._score_cache.pop(peer, None)

    # -- peers ------------------------------------------------------------------------

    def add_peer(
        self, peer: bytes, protocol: str, outbound: bool, now: float, ip: str | None = None
    ) -> None:
        """A peer with a pubsub stream speaking ``protocol``; we announce our topics."""
        self.mesh.add_peer(peer, outbound, protocol, peer in self.config.explicit_peers)
        self._peers[peer] = _PeerState(protocol)
        if self.score is not None:
            self.score.add_peer(peer, ip)
        if self._subscribed:
            self._rpc(peer).subscriptions.extend((True, t) for t in sorted(self._subscribed))

    def resend_subscriptions(self, peer: bytes) -> None:
        """Announce our topics to ``peer`` again (it opened a new stream: a new session)."""
        if peer in self._peers and self._subscribed:
            self._rpc(peer).subscriptions.extend((True, t) for t in sorted(self._subscribed))

    def remove_peer(self, peer: bytes, now: float) -> None:
        if self._peers.pop(peer, None) is None:
            return
        self.mesh.remove_peer(peer)
        if self.score is not None:
            self.score.remove_peer(peer, now)
        self._out.send.pop(peer, None)
        self._score_cache.pop(peer, None)
        for peers in self._promises.values():
            peers.pop(peer, None)

    def has_peer(self, peer: bytes) -> bool:
        return peer in self._peers

    def peer_protocol(self, peer: bytes) -> str | None:
        state = self._peers.get(peer)
        return None if state is None else state.protocol

    def set_validated(self, topic: str, validated: bool) -> None:
        """Whether messages of ``topic`` wait for the application's validators."""
        if validated:
            self._validated_topics.add(topic)
        else:
            self._validated_topics.discard(topic)

    # -- local subscriptions ----------------------------------------------------------

    def subscribe(self, topic: str, now: float) -> None:
        """JOIN: announce to every peer, graft the chosen mesh."""
        if topic in self._subscribed:
            return
        self._subscribed.add(topic)
        for peer in self._peers:
            self._rpc(peer).subscriptions.append((True, topic))
        for peer in self.mesh.join(topic, now, self._seed()):
            self._rpc(peer).control.graft.append(topic)
            if self.score is not None:
                self.score.graft(peer, topic, now)

    def unsubscribe(self, topic: str, now: float) -> None:
        """LEAVE: announce, prune the mesh with the unsubscribe backoff."""
        if topic not in self._subscribed:
            return
        self._subscribed.discard(topic)
        for peer in self._peers:
            self._rpc(peer).subscriptions.append((False, topic))
        for peer, _, backoff in self.mesh.leave(topic, now):
            self._send_prune(peer, topic, backoff, now, with_px=False)

    def subscribed(self) -> list[str]:
        return sorted(self._subscribed)

    # -- publishing -------------------------------------------------------------------

    def make_message(self, topic: str, data: bytes) -> tuple[bytes, Message]:
        """Build (and sign, under StrictSign) our next message; its ID too."""
        if len(data) > self.config.max_message_size:
            raise LocalProtocolError(
                f"message of {len(data)} bytes exceeds {self.config.max_message_size}"
            )
        self._seqno += 1
        if self.config.signature_policy is SignaturePolicy.STRICT_SIGN:
            assert self._identity is not None
            message = sign_message(self._identity, topic, data, self._seqno)
        else:
            message = Message(topic=topic, data=data)
        return self.config.message_id(message), message

    def publish(self, msg_id: bytes, message: Message, now: float) -> int:
        """Send our (already validated) message; returns how many peers it went to."""
        if not self.seen.add(msg_id, now):
            return 0  # the same content-addressed message was already here
        encoded = message.encode()
        self.mcache.put(msg_id, message.topic, encoded)
        targets = self.mesh.publish_targets(
            message.topic, None, self.config.flood_publish, now, self._seed()
        )
        for peer in targets:
            self._rpc(peer).raw_messages.append(encoded)
        if message.topic in self._subscribed:
            self._out.deliver.append(Delivered(msg_id, message, None))
        return len(targets)

    # -- incoming RPCs ----------------------------------------------------------------

    def handle_rpc(self, peer: bytes, rpc: Rpc, now: float) -> None:
        """An RPC from ``peer`` (decoded and bounds-checked by ``decode_rpc``)."""
        state = self._peers.get(peer)
        if state is None:
            return
        self._now = now
        score = self._score_of(peer, now)
        if self.score is not None and score < self.config.thresholds.graylist_threshold:
            self.stats.rpcs_graylisted += 1
            return
        for subscribe, topic in rpc.subscriptions:
            if subscribe:
                self.mesh.peer_subscribed(peer, topic)
            else:
                self.mesh.peer_unsubscribed(peer, topic)
        for message in rpc.messages:
            self._handle_message(peer, state, message, now)
        if rpc.received:
            self._handle_received(peer, state, rpc.received, now)
        control = rpc.control
        if state.protocol == PROTOCOL_FLOODSUB or control.empty():
            return
        if control.idontwant and state.protocol == PROTOCOL_MESHSUB_V12:
            self._handle_idontwant(state, control.idontwant)
        if control.graft:
            self._handle_grafts(peer, control.graft, now)
        if control.prune:
            self._handle_prunes(peer, control.prune, score, now)
        gossip_ok = self.score is None or score >= self.config.thresholds.gossip_threshold
        if gossip_ok and control.ihave:
            self._handle_ihave(peer, state, control.ihave, now)
        if gossip_ok and control.iwant:
            self._handle_iwant(peer, control.iwant)

    def _penalise(self, peer: bytes, count: float = 1.0) -> None:
        if self.score is not None:
            self.score.behaviour_penalty(peer, count)
            self._score_cache.pop(peer, None)

    def _handle_received(
        self, peer: bytes, state: _PeerState, received: list[ReceivedMessage], now: float
    ) -> None:
        """Lazily decoded messages: duplicates are dropped on their ID fields alone."""
        subscribed = self._subscribed
        seen = self.seen
        for entry in received:
            if entry.topic not in subscribed:
                continue
            if not self._fast_id:
                self._handle_message(peer, state, entry.decode(), now, entry)
                continue
            msg_id = entry.from_peer + entry.seqno  # default_message_id, undecoded
            if self._promises:
                self._promises.pop(msg_id, None)
            if msg_id in seen:
                self.stats.duplicates_received += 1
                self._duplicate(peer, msg_id, now)
                continue
            self._handle_message(peer, state, entry.decode(), now, entry, msg_id)

    def _handle_message(
        self,
        peer: bytes,
        state: _PeerState,
        message: Message,
        now: float,
        received: ReceivedMessage | None = None,
        msg_id: bytes | None = None,
    ) -> None:
        """A message from ``peer``. With ``msg_id`` the caller has already checked the
        topic, computed the ID, settled any IWANT promise and found the ID unseen."""
        topic = message.topic
        config = self.config
        if msg_id is None:
            if topic not in self._subscribed:
                return  # we relay only topics we joined (v1.0 "Message Processing")
            msg_id = config.message_id(message)
            if self._promises:
                self._promises.pop(msg_id, None)
            if msg_id in self.seen:
                self.stats.duplicates_received += 1
                self._duplicate(peer, msg_id, now)
                return
        self.stats.messages_received += 1
        problem = None
        if len(message.data) > config.max_message_size:
            problem = "message too large"
        else:
            problem = verify_message(message, config.signature_policy, self._verify_ed25519)
        if problem is not None:
            # Not marked seen: a forged copy must not shadow the genuine message.
            self.stats.invalid_received += 1
            self._invalid(peer, topic)
            return
        self.seen.add(msg_id, now)
        if len(message.data) >= config.idontwant_message_size:
            self._send_idontwant(msg_id, topic, peer)
        delivery = _Delivery(topic, peer, now, received)
        self._track(msg_id, delivery)
        if topic in self._validated_topics:
            if self._pending >= config.max_pending_validations:
                self.stats.validation_overflow += 1
                delivery.status = _IGNORED
                delivery.received = None
                return
            self._pending += 1
            self._out.validate.append(PendingValidation(msg_id, message, peer))
            return
        self._accept(msg_id, message, delivery, now)

    def _track(self, msg_id: bytes, delivery: _Delivery) -> None:
        deliveries = self._deliveries
        if len(deliveries) >= self.config.max_tracked_deliveries:
            oldest = next(iter(deliveries))
            if deliveries[oldest].status == _PENDING:
                self._pending -= 1
            del deliveries[oldest]
        deliveries[msg_id] = delivery

    def _duplicate(self, peer: bytes, msg_id: bytes, now: float) -> None:
        delivery = self._deliveries.get(msg_id)
        if delivery is None:
            return
        if peer in delivery.peers:
            self._penalise(peer)  # the same message twice from one peer: a flood
            return
        if len(delivery.peers) < 64:
            delivery.peers.append(peer)
        if self.score is None:
            return
        if delivery.status == _VALID:
            if self._count_near_first:
                self.score.near_first_delivery(peer, delivery.topic, delivery.first_seen, now)
        elif delivery.status == _INVALID:
            self._invalid(peer, delivery.topic)

    def _send_idontwant(self, msg_id: bytes, topic: str, source: bytes) -> None:
        for peer in self.mesh.mesh_peers(topic):
            if peer == source:
                continue
            state = self._peers.get(peer)
            if state is not None and state.protocol == PROTOCOL_MESHSUB_V12:
                self._rpc(peer).control.idontwant.append(msg_id)
                self.stats.idontwant_sent += 1

    def validation_done(
        self, pending: PendingValidation, result: ValidationResult, now: float
    ) -> None:
        """The validators' verdict on ``pending``: ACCEPT delivers and forwards it."""
        delivery = self._deliveries.get(pending.msg_id)
        if delivery is None or delivery.status != _PENDING:
            return
        self._pending -= 1
        if result is ValidationResult.ACCEPT:
            self._accept(pending.msg_id, pending.message, delivery, now)
            return
        delivery.received = None  # kept only to forward it: not needed any more
        if result is ValidationResult.REJECT:
            delivery.status = _INVALID
            self.stats.invalid_received += 1
            for peer in delivery.peers:
                self._invalid(peer, delivery.topic)
        else:
            delivery.status = _IGNORED

    def _accept(self, msg_id: bytes, message: Message, delivery: _Delivery, now: float) -> None:
        delivery.status = _VALID
        topic = message.topic
        if self.score is not None:
            self.score.first_delivery(delivery.source, topic)
            if self._count_near_first:
                for peer in delivery.peers[1:]:
                    self.score.near_first_delivery(peer, topic, delivery.first_seen, now)
        if delivery.received is not None:
            encoded = delivery.received.encode()  # forward what arrived: no re-encoding
            delivery.received = None
        else:
            encoded = message.encode()
        self.mcache.put(msg_id, topic, encoded)
        self._out.deliver.append(Delivered(msg_id, message, delivery.source))
        targets = self.mesh.publish_targets(topic, delivery.source, False, now, self._seed())
        senders = delivery.peers
        author = message.from_peer
        peers = self._peers
        forwarded = 0
        for peer in targets:
            if peer in senders or peer == author:
                continue
            state = peers.get(peer)
            if state is not None and state.dontwant and msg_id in state.dontwant:
                self.stats.idontwant_suppressed += 1
                continue
            self._rpc(peer).raw_messages.append(encoded)
            forwarded += 1
        self.stats.messages_forwarded += forwarded

    # -- control ----------------------------------------------------------------------

    def _handle_idontwant(self, state: _PeerState, ids: list[bytes]) -> None:
        dontwant = state.dontwant
        room = self.config.max_idontwant_per_peer - len(dontwant)
        for msg_id in ids[: max(room, 0)]:
            dontwant[msg_id] = self._ticks

    def _handle_grafts(self, peer: bytes, topics: list[str], now: float) -> None:
        backoff = int(self.config.gossip.prune_backoff)
        for topic in topics:
            verdict = self.mesh.handle_graft(peer, topic, now)
            if verdict == "accepted":
                if self.score is not None:
                    self.score.graft(peer, topic, now)
            elif verdict != "ignored":
                if verdict == "refused_backoff":
                    self._penalise(peer)
                with_px = verdict == "refused_full" and self._score_of(peer, now) >= 0
                self._send_prune(peer, topic, backoff, now, with_px=with_px)

    def _handle_prunes(self, peer: bytes, prunes: list[Prune], score: float, now: float) -> None:
        for prune in prunes:
            backoff = None if prune.backoff is None else float(min(prune.backoff, 86_400))
            if self.mesh.handle_prune(peer, prune.topic, backoff, now) and self.score is not None:
                self.score.prune(peer, prune.topic, now)
            if prune.peers and score >= self.config.thresholds.accept_px_threshold:
                known = self._peers
                self._out.px.extend(
                    p for p in prune.peers[: self.config.prune_peers] if p not in known
                )

    def _send_prune(
        self, peer: bytes, topic: str, backoff: float, now: float, *, with_px: bool
    ) -> None:
        if self.score is not None:
            self.score.prune(peer, topic, now)
        if not self._control_ok(peer):
            return
        px: tuple[bytes, ...] = ()
        if with_px and self.config.do_px and self._peers[peer].protocol != PROTOCOL_MESHSUB_V10:
            candidates = [
                other
                for other in self.mesh.topic_peers(topic)
                if other != peer and self._score_of(other, now) >= 0
            ]
            px = tuple(self._rng.sample(candidates, self.config.prune_peers))
        self._rpc(peer).control.prune.append(Prune(topic, px, int(backoff)))

    def _handle_ihave(
        self, peer: bytes, state: _PeerState, ihaves: list[tuple[str, list[bytes]]], now: float
    ) -> None:
        config = self.config
        state.ihaves += 1
        if state.ihaves > config.max_ihave_messages:
            return
        wanted: list[bytes] = []
        room = config.max_ihave_length - state.ihave_ids
        for topic, ids in ihaves:
            if topic not in self._subscribed or room <= 0:
                continue
            unknown = [msg_id for msg_id in ids if msg_id not in self.seen]
            for msg_id in unknown[:room]:
                if msg_id not in self._promises:
                    wanted.append(msg_id)
            room -= len(unknown)
        if not wanted:
            return
        state.ihave_ids += len(wanted)
        deadline = now + config.iwant_followup_time
        for msg_id in wanted:
            self._promises.setdefault(msg_id, {})[peer] = deadline
        self._rpc(peer).control.iwant.extend(wanted)
        self.stats.iwant_sent += len(wanted)

    def _handle_iwant(self, peer: bytes, ids: list[bytes]) -> None:
        limit = self.config.gossip_retransmission
        rpc: Rpc | None = None
        for msg_id in ids:
            encoded = self.mcache.get_for_peer(msg_id, peer, limit)
            if encoded is not None:
                if rpc is None:
                    rpc = self._rpc(peer)
                rpc.raw_messages.append(encoded)
                self.stats.iwant_served += 1

    # -- heartbeat --------------------------------------------------------------------

    def heartbeat(self, now: float) -> None:
        """Mesh maintenance, gossip emission, cache shifting, score decay (every second)."""
        self._ticks += 1
        self._now = now
        score = self.score
        if score is not None:
            self._score_cache.clear()
            score.refresh(now)
            self._broken_promises(now)
            self.mesh.set_scores(score.scores(list(self._peers), now))
        decision = self.mesh.heartbeat(now, self._seed())
        for peer, topic in decision.grafts:
            if score is not None:
                score.graft(peer, topic, now)
            self._rpc(peer).control.graft.append(topic)
        for peer, topic, backoff in decision.prunes:
            self._send_prune(peer, topic, backoff, now, with_px=True)
        max_ids = self.config.max_ihave_length
        for topic, peers in decision.gossip.items():
            ids = self.mcache.gossip_ids(topic)
            if not ids:
                continue
            if len(ids) > max_ids:
                ids = self._rng.sample(ids, max_ids)
            for peer in peers:
                if self._control_ok(peer):
                    self._rpc(peer).control.ihave.append((topic, ids))
        self.mcache.shift()
        self.seen.expire(now)
        oldest_tick = self._ticks - self.config.idontwant_ttl_heartbeats
        for state in self._peers.values():
            state.ihaves = 0
            state.ihave_ids = 0
            if state.dontwant:
                state.dontwant = {k: t for k, t in state.dontwant.items() if t > oldest_tick}
        horizon = now - self.config.heartbeat_interval * self.config.history_length
        deliveries = self._deliveries
        while deliveries:
            first = next(iter(deliveries))
            if deliveries[first].first_seen >= horizon or deliveries[first].status == _PENDING:
                break
            del deliveries[first]

    def _broken_promises(self, now: float) -> None:
        """P7 for peers that advertised a message, were asked for it, and never sent it."""
        assert self.score is not None
        broken: set[bytes] = set()
        for msg_id in [m for m, p in self._promises.items() if not p or min(p.values()) < now]:
            peers = self._promises.pop(msg_id)
            broken.update(peer for peer, deadline in peers.items() if deadline < now)
        for peer in broken:  # one penalty per peer and heartbeat, however many IDs
            self._penalise(peer)

    # -- queries ----------------------------------------------------------------------

    def peer_score(self, peer: bytes) -> float:
        return self._score_of(peer, self._now)

    def mesh_peers(self, topic: str) -> list[bytes]:
        return self.mesh.mesh_peers(topic)

    def topic_peers(self, topic: str) -> list[bytes]:
        return self.mesh.topic_peers(topic)

    def peers(self) -> Iterable[bytes]:
        return self._peers.keys()


def _with_thresholds(params: GossipParams, thresholds: ScoreThresholds) -> GossipParams:
    from dataclasses import replace

    return replace(
        params,
        gossip_threshold=thresholds.gossip_threshold,
        publish_threshold=thresholds.publish_threshold,
        opportunistic_graft_threshold=thresholds.opportunistic_graft_threshold,
    )
