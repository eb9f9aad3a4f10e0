"""The SSN's configurations, statistics and values: the server's (``SsnConfig``,
``ServerStatistics``, the internal ``RequestFailed``) and the client's (``SsnClientConfig``,
``ClientStatistics``, ``PeerInfo``, ``IncomingSignal``; ``client.SsnClient`` uses them).

Every limit of ``server.SsnServer`` is a field of ``SsnConfig``, with the behaviour when it
is hit documented there (an ERROR with its own code, ``client_protocol.ErrorCode``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.proto.names import NameRecord
from neonet.proto.ssn import client_protocol as cp
from neonet.proto.ssn.mailbox import MailboxConfig
from neonet.proto.ssn.membership import MembershipConfig


class RequestFailed(Exception):
    """Internal: answer the current request with ERROR(code, text)."""

    def __init__(self, code: cp.ErrorCode, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(frozen=True, slots=True)
class SsnConfig:
    replicas: int = 3
    max_clients: int = 20_000
    max_payload: int = cp.MAX_PAYLOAD
    client_rate: float = 200.0  # requests per second per registered client
    client_burst: float = 400.0
    address_rate: float = 50.0  # registrations per second per remote IP address
    address_burst: float = 200.0
    offline_grace: float = 60.0  # a client gone this long gets signals queued, not refused
    request_timeout: float = 3.0  # one federation hop
    max_requests_in_flight: int = 256  # per client stream (backpressure beyond)
    # New registrations being checked and stored at once; more are refused at once with
    # OVER_CAPACITY ("busy"). Renewals by held clients are never refused for load.
    max_registrations_in_flight: int = 64
    presence_cache: int = 100_000
    # Routed SIGNALs (FORWARDs sent by the per-read SignalRouter) awaiting their answer,
    # for all clients at once; when full, further SIGNALs take the per-frame path (same
    # answers, more CPU per signal) until answers or request_timeout free room.
    max_routed_pending: int = 16_384
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    mailbox: MailboxConfig = field(default_factory=MailboxConfig)

    def __post_init__(self) -> None:
        if self.max_registrations_in_flight < 1:
            raise ValueError("max_registrations_in_flight must be at least 1")
        if self.max_routed_pending < 1:
            raise ValueError("max_routed_pending must be at least 1")


@dataclass(slots=True)
class ServerStatistics:
    clients: int = 0
    registrations: int = 0
    lookups: int = 0
    signals: int = 0
    forwards_in: int = 0
    errors: int = 0
    stored_records: int = 0
    registrations_refused_busy: int = 0


class SystemRandomness:
    """The engine's random source, from the OS generator."""

    def __init__(self) -> None:
        self._random = random.SystemRandom()

    def randrange(self, stop: int) -> int:
        return self._random.randrange(stop)


@dataclass(frozen=True, slots=True)
class SsnClientConfig:
    probe_timeout: float = 3.0
    request_timeout: float = 5.0
    presence_lifetime: int = 3600  # seconds; re-registration renews it
    incoming_buffer: int = 1024
    max_probes: int = 8  # SSNs measured per choice
    keepalive_interval: float = 10.0
    keepalive_timeout: float = 5.0
    # connect(): all direct addresses of the peer, then each relayed address, then DCUtR.
    direct_timeout: float = 3.0
    relay_timeout: float = 10.0
    upgrade_timeout: float = 20.0  # the peer's 3 hole punches of up to punch_timeout each
    punch_timeout: float = 5.0  # one hole-punch dial (DCUtR)
    # False: publish only relayed addresses (a client that knows its listening addresses
    # are private spares every caller a dial that cannot succeed).
    advertise_listen_addrs: bool = True
    # When nothing of the peer answers, ask it (in a signal) to dial us back, and wait.
    reverse_timeout: float = 10.0
    accept_connect_requests: bool = True  # dial back peers that ask us to


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What a lookup returns: the peer, its addresses and SSN, and its name if any."""

    peer_id: PeerId
    addrs: tuple[Multiaddr, ...]
    ssn_id: PeerId
    seq: int
    name: NameRecord | None


@dataclass(frozen=True, slots=True)
class IncomingSignal:
    sender: PeerId
    payload: bytes


@dataclass(slots=True)
class ClientStatistics:
    registrations: int = 0
    failovers: int = 0
    dropped_signals: int = 0
    callback_errors: int = 0  # application callbacks that raised (logged, dropped)
    connect_requests: int = 0  # handled (dialed back)
    dropped_connect_requests: int = 0  # malformed, refused or over MAX_DIALS_BACK
    last_failover_seconds: float = 0.0
    rtts: dict[str, float] = field(default_factory=dict)
