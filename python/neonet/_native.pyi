"""Type stub of the Rust extension module (crates/neonet-py); checked by mypy stubtest in CI."""

from typing import Self, final

from typing_extensions import disjoint_base

from neonet.core.yamux import YamuxConfig, YamuxEvent, YamuxStatistics

def base58btc_encode(data: bytes) -> str:
    """Encode bytes as base58btc text; ValueError above 1024 bytes."""

def base58btc_decode(text: str) -> bytes:
    """Decode base58btc text; neonet.core.errors.DecodeError on bad input."""

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

__all__ = [
    "NoiseTransport",
    "NoiseYamuxConnection",
    "YamuxConnection",
    "base58btc_decode",
    "base58btc_encode",
]
