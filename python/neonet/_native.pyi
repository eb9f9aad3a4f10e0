"""Type stub of the Rust extension module (crates/neonet-py); checked by mypy stubtest in CI."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Self, final

from typing_extensions import disjoint_base

from neonet.core.cbor import Value
from neonet.core.gossip import GossipParams, GraftVerdict, HeartbeatDecision
from neonet.core.ledger import ChainHead, ChainVerdict
from neonet.core.routing import UpdateOutcome
from neonet.core.yamux import YamuxConfig, YamuxEvent, YamuxStatistics

def base58btc_encode(data: bytes) -> str:
    """Encode bytes as base58btc text; ValueError above 1024 bytes."""

def base58btc_decode(text: str) -> bytes:
    """Decode base58btc text; neonet.core.errors.DecodeError on bad input."""

# -- Kademlia routing table (crates/neonet-py/src/routing.rs; twin: neonet.core.routing) --

def kad_key(peer_id: bytes) -> bytes:
    """The Kademlia key of a peer: SHA-256 of its peer ID bytes (32 bytes)."""

@final
class RoutingTable:
    """Kademlia routing table: 256 k-buckets by shared-prefix length with the local key."""

    def __new__(
        cls,
        local_peer_id: bytes,
        *,
        bucket_size: int = 20,
        replacement_size: int = 10,
        pending_timeout: float = 30.0,
    ) -> RoutingTable: ...
    @property
    def local_peer_id(self) -> bytes: ...
    @property
    def local_key(self) -> bytes: ...
    @property
    def bucket_size(self) -> int: ...
    @property
    def replacement_size(self) -> int: ...
    @property
    def pending_timeout(self) -> float: ...
    def update(self, peer_id: bytes, now: float) -> UpdateOutcome: ...
    def update_many(self, peer_ids: Sequence[bytes], now: float) -> list[UpdateOutcome]: ...
    def resolve_pending(self, peer_id: bytes, alive: bool, now: float) -> bool: ...
    def remove(self, peer_id: bytes) -> bool: ...
    def __contains__(self, peer_id: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def peers(self) -> list[bytes]: ...
    def bucket_sizes(self) -> list[int]: ...
    def bucket_peers(self, index: int) -> list[bytes]: ...
    def replacements(self, index: int) -> list[bytes]: ...
    def pending(self, index: int) -> bytes | None: ...
    def last_seen(self, peer_id: bytes) -> float | None: ...
    def bucket_index(self, key: bytes) -> int: ...
    def closest(self, key: bytes, n: int) -> list[bytes]: ...
    def closest_many(self, keys: Sequence[bytes], n: int) -> list[list[bytes]]: ...
    def closest_many_flat(self, keys: Sequence[bytes], n: int) -> list[bytes]: ...
    def mark_refreshed(self, bucket: int | bytes, now: float) -> None: ...
    def stale_buckets(self, now: float, interval: float) -> list[int]: ...
    def random_key_for_bucket(self, index: int, random_bytes: bytes) -> bytes: ...

# --- gossip (crates/neonet-core/src/gossip; twin: neonet.core.gossip) ---------------------

@final
class SeenCache:
    """Message IDs seen in the last ``ttl`` seconds (see ``neonet.core.gossip.SeenCache``)."""

    def __new__(cls, ttl: float = 120.0, capacity: int = ...) -> Self: ...
    @property
    def ttl(self) -> float: ...
    @property
    def capacity(self) -> int: ...
    def __len__(self) -> int: ...
    def __contains__(self, msg_id: object, /) -> bool: ...
    def expire(self, now: float) -> int: ...
    def add(self, msg_id: bytes, now: float) -> bool: ...
    def add_many(self, msg_ids: Iterable[bytes], now: float) -> list[bool]: ...
    def contains_many(self, msg_ids: Iterable[bytes]) -> list[bool]: ...
    def add_packed(self, msg_ids: bytes, id_len: int, now: float) -> bytes: ...
    def contains_packed(self, msg_ids: bytes, id_len: int) -> bytes: ...

@final
class MessageCache:
    """The message cache behind IHAVE/IWANT (see ``neonet.core.gossip.MessageCache``)."""

    def __new__(
        cls,
        history_length: int = ...,
        gossip_length: int = ...,
        capacity: int = ...,
        iwant_peers_per_message: int = ...,
    ) -> Self: ...
    def __len__(self) -> int: ...
    def __contains__(self, msg_id: object, /) -> bool: ...
    def put(self, msg_id: bytes, topic: str, message: bytes) -> bool: ...
    def get(self, msg_id: bytes) -> bytes | None: ...
    def get_for_peer(self, msg_id: bytes, peer: bytes, max_transmissions: int) -> bytes | None: ...
    def gossip_ids(self, topic: str) -> list[bytes]: ...
    def shift(self) -> None: ...

@final
class MeshState:
    """Mesh, fan-out, subscriptions, scores, backoffs (see ``neonet.core.gossip.MeshState``)."""

    def __new__(cls, params: GossipParams | None = None) -> Self: ...
    @property
    def params(self) -> GossipParams: ...
    def add_peer(
        self, peer: bytes, outbound: bool, protocol: str, explicit: bool = False
    ) -> None: ...
    def remove_peer(self, peer: bytes) -> None: ...
    def set_score(self, peer: bytes, score: float) -> None: ...
    def set_scores(self, scores: Mapping[bytes, float]) -> None: ...
    def peer_subscribed(self, peer: bytes, topic: str) -> bool: ...
    def peer_unsubscribed(self, peer: bytes, topic: str) -> None: ...
    def backoff_until(self, peer: bytes, topic: str) -> float | None: ...
    def join(self, topic: str, now: float, seed: int) -> list[bytes]: ...
    def leave(self, topic: str, now: float) -> list[tuple[bytes, str, float]]: ...
    def handle_graft(self, peer: bytes, topic: str, now: float) -> GraftVerdict: ...
    def handle_prune(self, peer: bytes, topic: str, backoff: float | None, now: float) -> bool: ...
    def heartbeat(self, now: float, seed: int) -> HeartbeatDecision: ...
    def publish_targets(
        self, topic: str, source: bytes | None, flood_publish: bool, now: float, seed: int
    ) -> list[bytes]: ...
    def publish_targets_many(
        self,
        messages: Iterable[tuple[str, bytes | None]],
        flood_publish: bool,
        now: float,
        seed: int,
    ) -> list[list[bytes]]: ...
    def publish_targets_flat(
        self,
        messages: Iterable[tuple[str, bytes | None]],
        flood_publish: bool,
        now: float,
        seed: int,
    ) -> tuple[list[bytes], list[int]]: ...
    def mesh_peers(self, topic: str) -> list[bytes]: ...
    def fanout_peers(self, topic: str) -> list[bytes]: ...
    def topic_peers(self, topic: str) -> list[bytes]: ...
    def joined_topics(self) -> list[str]: ...
    def peer_topics(self, peer: bytes) -> list[str]: ...
    def peer_count(self) -> int: ...
    def topic_count(self) -> int: ...

# Ledger (crates/neonet-py/src/ledger.rs; pure twins neonet.core.cbor and neonet.core.ledger)

def cbor_encode(value: object) -> bytes:
    """Encode a value of the canonical CBOR subset; ValueError for anything outside it."""

def cbor_decode(data: bytes) -> Value:
    """Decode canonical CBOR; neonet.core.errors.DecodeError on anything else."""

def hash_block_body(body: bytes) -> bytes:
    """BLAKE3 derive-key ("NeoNet 2026 bank block v1") over an encoded block body."""

def vote_roots(
    committee_id: bytes, body: bytes, paths: Sequence[tuple[int, bytes]]
) -> tuple[bytes, list[bytes]]:
    """A block's vote message and the root each (sides, path) leads to from it."""

def vote_tree(leaves: Sequence[bytes], paths: bool = True) -> tuple[bytes, list[tuple[int, bytes]]]:
    """The root of the batch vote tree over 32-byte leaves and, with paths, each leaf's
    (sides, path)."""

def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Verify one Ed25519 signature under ZIP-215; releases the GIL."""

def verify_signatures(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """One ZIP-215 verdict per (public_key, message, signature); batched, releases the GIL."""

def verify_chain(
    blocks: Sequence[bytes],
    *,
    mint_account: bytes | None,
    start: ChainHead | None = None,
    signatures: bool = True,
) -> ChainVerdict:
    """Verify one account's chain from its OPEN block or from start (``signatures=False``:
    without the signature pass); releases the GIL."""

# --- the connection data path (twins: neonet.core.noise_transport, yamux, noise_yamux) ---

@final
class NoiseTransport:
    """The established Noise channel; see neonet.core.noise_transport.NoiseTransport."""

    def __new__(
        cls,
        send_key: bytes,
        receive_key: bytes,
        *,
        received: bytes | None = None,
        send_nonce: int | None = None,
        receive_nonce: int | None = None,
    ) -> Self: ...
    @property
    def messages_sent(self) -> int: ...
    @property
    def messages_received(self) -> int: ...
    @property
    def buffered(self) -> int: ...
    def take(self) -> NoiseTransport:
        """Move the channel state to a new transport; this one then refuses all use."""
    def encrypt(self, plaintext: bytes | bytearray | memoryview) -> bytes:
        """Length-prefixed transport messages carrying plaintext (b"" for empty input)."""
    def receive_data(self, data: bytes | bytearray | memoryview) -> bytes:
        """All plaintext decryptable now (b"" if none), after buffering data."""

@disjoint_base
class YamuxConnection:
    """One side of a yamux session; see neonet.core.yamux.YamuxConnection."""

    def __new__(cls, *, is_client: bool, config: YamuxConfig | None = None) -> Self: ...
    def receive_data(self, data: bytes | bytearray | memoryview) -> list[YamuxEvent]:
        """Parse every whole frame in data (plus any carried-over partial frame)."""
    def data_to_send(self) -> bytes:
        """Return and clear everything queued for the peer."""
    @property
    def has_output(self) -> bool:
        """Whether frames are queued for the peer (data_to_send would return bytes)."""
    def open_stream(self) -> int:
        """Open an outbound stream and queue its SYN; data may be sent before the ACK."""
    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of data as the send window allows; return how many bytes."""
    def send_window(self, stream_id: int) -> int:
        """Bytes we may send now (0 once the stream is closed for writing or released)."""
    def stream_is_open(self, stream_id: int) -> bool:
        """Whether stream_id is live (opened and not yet released)."""
    def consume(self, stream_id: int, amount: int) -> None:
        """The application took amount received bytes: give the peer credit when due."""
    def close_stream(self, stream_id: int) -> None:
        """Send FIN: our write side is done. A released stream is left alone."""
    def reset_stream(self, stream_id: int) -> None:
        """Send RST: abort both directions. A released stream is left alone."""
    def ping(self, opaque: int) -> None:
        """Queue a ping; the peer's answer arrives as PongReceived(opaque)."""
    def go_away(self, code: int = ...) -> None:
        """Announce session termination; afterwards inbound SYNs are refused."""
    def statistics(self) -> YamuxStatistics:
        """A neonet.core.yamux.YamuxStatistics snapshot."""

@final
class NoiseYamuxConnection(YamuxConnection):
    """Yamux inside the Noise transport; see neonet.core.noise_yamux.NoiseYamuxConnection."""

    def __new__(
        cls, noise: NoiseTransport, *, is_client: bool, config: YamuxConfig | None = None
    ) -> Self: ...
    def receive_plaintext(self, data: bytes | bytearray | memoryview) -> list[YamuxEvent]:
        """Parse bytes that are already plaintext (read past a negotiation, say)."""

# --- the SSN signal path's messages (neonet.core.ssn_wire) -----------------------------
def ssn_parse_signal_path(body: bytes, federation: bool) -> tuple[int, ...] | None:
    """The fields of a signal-path message, or None (see neonet.core.ssn_wire)."""

def ssn_encode_signal(rid: int, to: bytes, payload: bytes) -> bytes:
    """The frame of client SIGNAL [1, 5, rid, to, payload]."""

def ssn_encode_incoming(sender: bytes, payload: bytes) -> bytes:
    """The frame of client INCOMING [1, 8, 0, sender, payload]."""

def ssn_encode_forward(rid: int, sender: bytes, to: bytes, payload: bytes) -> bytes:
    """The frame of federation FORWARD [1, 2, rid, sender, to, payload]."""

def ssn_encode_status(federation: bool, rid: int, status: int) -> bytes:
    """The frame of SIGNAL_SENT or, federation, FORWARDED [1, kind, rid, status]."""

def ssn_split_frames(data: bytes, max_frame: int) -> tuple[list[bytes], int]:
    """Whole uvarint-prefixed frames split off data: (frame bodies, bytes used)."""

# --- the sending SSN's SIGNAL -> FORWARD engine (neonet.core.signal_router) -------------
@final
class SignalRouter:
    """One call per read: SIGNALs to FORWARDs, FORWARDEDs to SIGNAL_SENTs."""

    def __new__(
        cls, max_payload: int, timeout: float, max_pending: int, max_routes: int
    ) -> Self: ...
    @property
    def routes(self) -> int: ...
    def __len__(self) -> int: ...
    def set_route(self, peer: bytes, member: int) -> None: ...
    def drop_route(self, peer: bytes) -> None: ...
    def open_link(self, member: int, link: int) -> None: ...
    def close_link(self, link: int) -> list[tuple[int, int, bytes, bytes]]: ...
    def route(
        self, stream: int, sender: bytes, bodies: Sequence[bytes], budget: int, now: float
    ) -> tuple[list[tuple[int, bytes]], list[bytes], int]: ...
    def answer(
        self, link: int, bodies: Sequence[bytes]
    ) -> tuple[list[tuple[int, bytes, int]], list[bytes]]: ...
    def deliver(
        self, bodies: Sequence[bytes]
    ) -> tuple[list[tuple[bytes, bytes, bytes, list[int]]], list[bytes]]: ...
    def take(self, link: int, rid: int) -> tuple[int, int, bytes, bytes] | None: ...
    def expire(self, now: float) -> list[tuple[int, int, bytes, bytes]]: ...

__all__ = [
    "MeshState",
    "MessageCache",
    "NoiseTransport",
    "NoiseYamuxConnection",
    "RoutingTable",
    "SeenCache",
    "SignalRouter",
    "YamuxConnection",
    "base58btc_decode",
    "base58btc_encode",
    "cbor_decode",
    "cbor_encode",
    "hash_block_body",
    "kad_key",
    "ssn_encode_forward",
    "ssn_encode_incoming",
    "ssn_encode_signal",
    "ssn_encode_status",
    "ssn_parse_signal_path",
    "ssn_split_frames",
    "verify_chain",
    "verify_signature",
    "verify_signatures",
    "vote_roots",
    "vote_tree",
]
