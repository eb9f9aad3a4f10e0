"""The upgrader: raw transport stream -> Noise -> yamux, per libp2p/specs connections/README.md.

Security is negotiated with multistream-select (only ``/noise``; plaintext is never
offered or accepted), then the muxer: ``/yamux/1.0.0``, chosen inside the Noise
handshake when both peers list it there (inlined muxer negotiation), else with a
second multistream-select round over the encrypted channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import trio

from neonet.core.errors import NegotiationError
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.net.negotiate import accept_protocol, select_protocol
from neonet.net.secure import NoiseStream, secure_inbound, secure_outbound
from neonet.proto.noise import PROTOCOL_ID as NOISE_PROTOCOL_ID

YAMUX_PROTOCOL_ID = "/yamux/1.0.0"
STREAM_MUXERS = (YAMUX_PROTOCOL_ID,)
Direction = Literal["inbound", "outbound"]


class PrefixedStream(trio.abc.Stream):
    """A stream that first returns bytes already read past a negotiation, then the rest."""

    def __init__(self, inner: trio.abc.Stream, prefix: bytes) -> None:
        self.inner = inner
        self._prefix = prefix

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            if max_bytes is None or max_bytes >= len(self._prefix):
                data, self._prefix = self._prefix, b""
            else:
                data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            await trio.lowlevel.checkpoint()
            return data
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def unwrapped(self) -> trio.abc.Stream | None:
        """The inner stream once the prefix is used up (None before): for drivers that
        read the socket underneath directly."""
        return None if self._prefix else self.inner


@dataclass(slots=True)
class SecuredChannel:
    """The result of an upgrade: the encrypted stream, the muxer and its first bytes."""

    secure: NoiseStream
    muxer: str
    muxer_initial_data: bytes

    @property
    def remote_peer(self) -> PeerId:
        return self.secure.remote_peer


async def upgrade(
    stream: trio.abc.Stream,
    identity: Ed25519Identity,
    *,
    direction: Direction,
    expected_peer: PeerId | None = None,
) -> SecuredChannel:
    """Secure and multiplex ``stream``. The caller bounds the time with a cancel scope."""
    if direction == "outbound":
        secure = await secure_outbound(
            stream,
            identity,
            expected_peer=expected_peer,
            stream_muxers=STREAM_MUXERS,
            negotiate=True,
        )
    else:
        _, leftover = await accept_protocol(stream, [NOISE_PROTOCOL_ID])
        transport = PrefixedStream(stream, leftover) if leftover else stream
        secure = await secure_inbound(transport, identity, stream_muxers=STREAM_MUXERS)

    if YAMUX_PROTOCOL_ID in secure.remote_stream_muxers:
        return SecuredChannel(secure, YAMUX_PROTOCOL_ID, b"")
    if direction == "outbound":
        muxer, leftover = await select_protocol(secure, list(STREAM_MUXERS))
    else:
        muxer, leftover = await accept_protocol(secure, STREAM_MUXERS)
    if muxer != YAMUX_PROTOCOL_ID:  # pragma: no cover - the engines only accept ours
        raise NegotiationError(f"unexpected muxer {muxer}")
    return SecuredChannel(secure, muxer, leftover)
