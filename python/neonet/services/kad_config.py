"""The parameters of a Kademlia DHT node (``KadConfig``), what a lookup returns
(``LookupResult``) and the record validators a node starts with (``default_validator``).

Split out of ``neonet.services.kad``, which re-exports all three.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from neonet.core.multiaddr import Multiaddr
from neonet.core.peer_id import PeerId
from neonet.proto.kad import ALPHA, K, KadPeer
from neonet.proto.kad_records import (
    MAX_VALUE_SIZE,
    BlobValidator,
    NamespacedValidator,
    PublicKeyValidator,
    Validator,
)
from neonet.services.kad_store import StoreLimits


@dataclass(frozen=True, slots=True)
class KadConfig:
    """Parameters of one DHT node; the defaults follow the spec and go-libp2p-kad-dht."""

    mode: Literal["server", "client"] = "server"
    k: int = K
    alpha: int = ALPHA
    request_timeout: float = 5.0  # one RPC, dial included
    lookup_timeout: float = 30.0
    record_ttl: float = 36 * 3600.0
    provider_ttl: float = 48 * 3600.0
    republish_interval: float = 22 * 3600.0
    refresh_interval: float = 600.0
    maintenance_interval: float = 60.0
    requests_per_second: float = 200.0  # per peer, inbound
    request_burst: float = 400.0
    max_value_size: int = MAX_VALUE_SIZE
    stream_idle_timeout: float = 30.0
    store_limits: StoreLimits = field(default_factory=StoreLimits)


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What a lookup found and what it cost."""

    peers: list[PeerId]  # the closest peers that answered, nearest first
    value: bytes | None = None
    providers: list[KadPeer] = field(default_factory=list)
    addrs: list[Multiaddr] = field(default_factory=list)
    hops: int = 0
    queried: int = 0
    failed: int = 0


def default_validator(extra: Mapping[str, Validator] | None = None) -> NamespacedValidator:
    """``/pk/``, NeoNet's ``/neonet-name/`` and ``/neonet-blob/``, and ``extra`` namespaces."""
    from neonet.proto.names import NAMESPACE, NameValidator

    validators: dict[str, Validator] = {
        "pk": PublicKeyValidator(),
        NAMESPACE: NameValidator(),
        "neonet-blob": BlobValidator(),
    }
    validators.update(extra or {})
    return NamespacedValidator(validators)
