"""The SSN server's configuration, statistics and internal request failure.

Every limit of ``server.SsnServer`` is a field of ``SsnConfig``, with the behaviour when it
is hit documented there (an ERROR with its own code, ``client_protocol.ErrorCode``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

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
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    mailbox: MailboxConfig = field(default_factory=MailboxConfig)

    def __post_init__(self) -> None:
        if self.max_registrations_in_flight < 1:
            raise ValueError("max_registrations_in_flight must be at least 1")


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
