"""Type stub of the Rust extension module (crates/neonet-py); checked by mypy stubtest in CI."""

from collections.abc import Sequence

from neonet.core.cbor import Value
from neonet.core.ledger import ChainHead, ChainVerdict

def base58btc_encode(data: bytes) -> str:
    """Encode bytes as base58btc text; ValueError above 1024 bytes."""

def base58btc_decode(text: str) -> bytes:
    """Decode base58btc text; neonet.core.errors.DecodeError on bad input."""

# Ledger (crates/neonet-py/src/ledger.rs; pure twins neonet.core.cbor and neonet.core.ledger)

def cbor_encode(value: object) -> bytes:
    """Encode a value of the canonical CBOR subset; ValueError for anything outside it."""

def cbor_decode(data: bytes) -> Value:
    """Decode canonical CBOR; neonet.core.errors.DecodeError on anything else."""

def hash_block_body(body: bytes) -> bytes:
    """BLAKE3 derive-key ("NeoNet 2026 bank block v1") over an encoded block body."""

def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Verify one Ed25519 signature under ZIP-215; releases the GIL."""

def verify_signatures(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """One ZIP-215 verdict per (public_key, message, signature); batched, releases the GIL."""

def verify_chain(
    blocks: Sequence[bytes], *, mint_account: bytes | None, start: ChainHead | None = None
) -> ChainVerdict:
    """Verify one account's chain from its OPEN block or from start; releases the GIL."""

__all__ = [
    "base58btc_decode",
    "base58btc_encode",
    "cbor_decode",
    "cbor_encode",
    "hash_block_body",
    "verify_chain",
    "verify_signature",
    "verify_signatures",
]
