"""Backend selection: the one module that imports ``neonet._native``.

Every hot path has a Rust implementation (``neonet._native``) and a pure-Python twin
with the same interface, errors and results. ``NEONET_PURE=1`` in the environment
forces the pure twins (also when the native module is missing, the pure path is used
and ``NATIVE_AVAILABLE`` is False). Callers use the module-level names, which point at
the selected backend; tests reach both through ``implementation("pure" | "native")``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from neonet.core import base58 as _pure_base58
from neonet.core import noise_transport as _pure_noise_transport
from neonet.core import noise_yamux as _pure_noise_yamux
from neonet.core import yamux as _pure_yamux
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
    # The connection data path (classes; see neonet.core.noise_transport, yamux and
    # noise_yamux for the constructors' signatures).
    NoiseTransport: Callable[..., NoiseTransportEngine]
    YamuxConnection: Callable[..., YamuxEngine]
    NoiseYamuxConnection: Callable[..., NoiseYamuxEngine]


_PURE = Implementation(
    name="pure",
    base58btc_encode=_pure_base58.encode,
    base58btc_decode=_pure_base58.decode,
    NoiseTransport=_pure_noise_transport.NoiseTransport,
    YamuxConnection=_pure_yamux.YamuxConnection,
    NoiseYamuxConnection=_pure_noise_yamux.NoiseYamuxConnection,
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
        NoiseTransport=_native.NoiseTransport,
        YamuxConnection=_native.YamuxConnection,
        NoiseYamuxConnection=_native.NoiseYamuxConnection,
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
NoiseTransport = ACTIVE.NoiseTransport
YamuxConnection = ACTIVE.YamuxConnection
NoiseYamuxConnection = ACTIVE.NoiseYamuxConnection
