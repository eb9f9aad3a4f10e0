"""Type stub of the Rust extension module (crates/neonet-py); checked by mypy stubtest in CI."""

def base58btc_encode(data: bytes) -> str:
    """Encode bytes as base58btc text; ValueError above 1024 bytes."""

def base58btc_decode(text: str) -> bytes:
    """Decode base58btc text; neonet.core.errors.DecodeError on bad input."""

__all__ = ["base58btc_decode", "base58btc_encode"]
