"""Backend selection: the one module that imports ``neonet._native``.

Every hot path has a Rust implementation (``neonet._native``) and a pure-Python twin
with the same interface, errors and results. ``NEONET_PURE=1`` in the environment
forces the pure twins (also when the native module is missing, the pure path is used
and ``NATIVE_AVAILABLE`` is False). Callers use the module-level names, which point at
the selected backend; tests reach both through ``implementation("pure" | "native")``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from neonet.core import base58 as _pure_base58
from neonet.core import cbor as _pure_cbor
from neonet.core import gossip as _pure_gossip
from neonet.core import ledger as _pure_ledger
from neonet.core import noise_transport as _pure_noise_transport
from neonet.core import noise_yamux as _pure_noise_yamux
from neonet.core import routing as _pure_routing
from neonet.core import signal_router as _pure_signal_router
from neonet.core import ssn_wire as _pure_ssn_wire
from neonet.core import yamux as _pure_yamux
from neonet.core.gossip import MeshStateInterface, MessageCacheInterface, SeenCacheInterface
from neonet.core.ledger import ChainHead, ChainVerdict
from neonet.core.noise_transport import NoiseTransportEngine
from neonet.core.noise_yamux import NoiseYamuxEngine
from neonet.core.yamux import YamuxEngine

BackendName = Literal["native", "pure"]
PURE_ENV_VAR = "NEONET_PURE"


@dataclass(frozen=True, slots=True)
class Implementation:
    """One backend's set of hot-path functions (grows with each hot path)."""

    name: BackendName
    base58btc_encode: Callable[[bytes], str]
    base58btc_decode: Callable[[str], bytes]
    kad_key: Callable[[bytes], bytes]
    # The routing table class; both classes share the interface of the pure one.
    RoutingTable: type[_pure_routing.RoutingTable]
    # GossipSub decision layer (neonet.core.gossip): the classes, called to construct.
    seen_cache: Callable[..., SeenCacheInterface]
    message_cache: Callable[..., MessageCacheInterface]
    mesh_state: Callable[..., MeshStateInterface]
    cbor_encode: Callable[[object], bytes]
    cbor_decode: Callable[[bytes], _pure_cbor.Value]
    hash_block_body: Callable[[bytes], bytes]
    vote_roots: Callable[[bytes, bytes, Sequence[tuple[int, bytes]]], tuple[bytes, list[bytes]]]
    vote_tree: Callable[[Sequence[bytes], bool], tuple[bytes, list[tuple[int, bytes]]]]
    verify_signature: Callable[[bytes, bytes, bytes], bool]
    verify_signatures: Callable[[Sequence[tuple[bytes, bytes, bytes]]], list[bool]]
    verify_chain: VerifyChain
    # The connection data path (classes; see neonet.core.noise_transport, yamux and
    # noise_yamux for the constructors' signatures).
    NoiseTransport: Callable[..., NoiseTransportEngine]
    YamuxConnection: Callable[..., YamuxEngine]
    NoiseYamuxConnection: Callable[..., NoiseYamuxEngine]
    # The SSN signal path's messages (neonet.core.ssn_wire).
    ssn_wire: _pure_ssn_wire.SsnWire
    # The sending SSN's per-read SIGNAL -> FORWARD engine (neonet.core.signal_router).
    SignalRouter: Callable[..., _pure_signal_router.SignalRouterInterface]


class VerifyChain(Protocol):
    """The signature of ``verify_chain`` (keyword-only arguments need a Protocol)."""

    def __call__(
        self,
        blocks: Sequence[bytes],
        *,
        mint_account: bytes | None,
        start: ChainHead | None = ...,
        signatures: bool = ...,
    ) -> ChainVerdict: ...


_PURE = Implementation(
    name="pure",
    base58btc_encode=_pure_base58.encode,
    base58btc_decode=_pure_base58.decode,
    kad_key=_pure_routing.kad_key,
    RoutingTable=_pure_routing.RoutingTable,
    seen_cache=_pure_gossip.SeenCache,
    message_cache=_pure_gossip.MessageCache,
    mesh_state=_pure_gossip.MeshState,
    cbor_encode=_pure_cbor.encode,
    cbor_decode=_pure_cbor.decode,
    hash_block_body=_pure_ledger.hash_block_body,
    vote_roots=_pure_ledger.vote_roots,
    vote_tree=_pure_ledger.vote_tree,
    verify_signature=_pure_ledger.verify_signature,
    verify_signatures=_pure_ledger.verify_signatures,
    verify_chain=_pure_ledger.verify_chain,
    NoiseTransport=_pure_noise_transport.NoiseTransport,
    YamuxConnection=_pure_yamux.YamuxConnection,
    NoiseYamuxConnection=_pure_noise_yamux.NoiseYamuxConnection,
    ssn_wire=_pure_ssn_wire.PURE,
    SignalRouter=_pure_signal_router.SignalRouter,
)


def _load_native() -> Implementation | None:
    try:
        from neonet import _native
    except ImportError:
        return None

    # The native module raises neonet.core.errors.DecodeError itself, like the pure twin.
    return Implementation(
        name="native",
        base58btc_encode=_native.base58btc_encode,
        base58btc_decode=_native.base58btc_decode,
        kad_key=_native.kad_key,
        RoutingTable=_native.RoutingTable,  # type: ignore[arg-type]
        seen_cache=_native.SeenCache,
        message_cache=_native.MessageCache,
        mesh_state=_native.MeshState,
        cbor_encode=_native.cbor_encode,
        cbor_decode=_native.cbor_decode,
        hash_block_body=_native.hash_block_body,
        vote_roots=_native.vote_roots,
        vote_tree=_native.vote_tree,
        verify_signature=_native.verify_signature,
        verify_signatures=_native.verify_signatures,
        verify_chain=_native.verify_chain,
        NoiseTransport=_native.NoiseTransport,
        YamuxConnection=_native.YamuxConnection,
        NoiseYamuxConnection=_native.NoiseYamuxConnection,
        ssn_wire=_pure_ssn_wire.SsnWire(
            _native.ssn_parse_signal_path,
            _native.ssn_encode_signal,
            _native.ssn_encode_incoming,
            _native.ssn_encode_forward,
            _native.ssn_encode_status,
            _native.ssn_split_frames,
        ),
        SignalRouter=_native.SignalRouter,
    )


_NATIVE = _load_native()
NATIVE_AVAILABLE = _NATIVE is not None


def pure_forced() -> bool:
    return os.environ.get(PURE_ENV_VAR, "").strip().lower() not in ("", "0", "false", "no")


def implementation(name: BackendName) -> Implementation:
    """Return the named backend; raise ``RuntimeError`` if native is asked for but missing."""
    if name == "pure":
        return _PURE
    if _NATIVE is None:
        raise RuntimeError(
            "neonet._native is not built; install the wheel or run `maturin develop`"
        )
    return _NATIVE


ACTIVE: Implementation = _PURE if pure_forced() or _NATIVE is None else _NATIVE
BACKEND: BackendName = ACTIVE.name

base58btc_encode = ACTIVE.base58btc_encode
base58btc_decode = ACTIVE.base58btc_decode
kad_key = ACTIVE.kad_key
RoutingTable = ACTIVE.RoutingTable
SeenCache = ACTIVE.seen_cache
MessageCache = ACTIVE.message_cache
MeshState = ACTIVE.mesh_state
cbor_encode = ACTIVE.cbor_encode
cbor_decode = ACTIVE.cbor_decode
hash_block_body = ACTIVE.hash_block_body
vote_tree = ACTIVE.vote_tree
verify_signature = ACTIVE.verify_signature
verify_signatures = ACTIVE.verify_signatures
verify_chain = ACTIVE.verify_chain
NoiseTransport = ACTIVE.NoiseTransport
YamuxConnection = ACTIVE.YamuxConnection
NoiseYamuxConnection = ACTIVE.NoiseYamuxConnection
ssn_wire = ACTIVE.ssn_wire
SignalRouter = ACTIVE.SignalRouter
