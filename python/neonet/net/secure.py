"""The Noise secure channel as a trio stream (the way ``trio.SSLStream`` wraps TCP).

``secure_outbound`` / ``secure_inbound`` run the libp2p Noise XX handshake
(``neonet.proto.noise``) over a raw transport stream and return a ``NoiseStream`` whose
``send_all`` encrypts and whose ``receive_some`` decrypts. Plaintext is never offered.
Once the muxer is chosen, ``into_parts`` hands the channel to the muxer's engine
(``neonet.core.backend.NoiseYamuxConnection``), which then decrypts whole socket reads
and encrypts its output itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import trio

from neonet.core.errors import HandshakeError, RemoteProtocolError
from neonet.core.keys import Ed25519Identity, PublicKey
from neonet.core.noise_transport import NoiseTransportEngine
from neonet.core.peer_id import PeerId
from neonet.proto.multistream import MultistreamDialer
from neonet.proto.noise import PROTOCOL_ID, NoiseHandshake

RECEIVE_CHUNK = 256 * 1024


class NoiseStream(trio.abc.Stream):
    """An authenticated, encrypted byte stream to ``remote_peer``."""

    def __init__(
        self,
        transport: trio.abc.Stream,
        noise: NoiseTransportEngine,
        *,
        remote_peer: PeerId,
        remote_public_key: PublicKey,
        remote_stream_muxers: Sequence[str] = (),
    ) -> None:
        self.transport_stream = transport
        self._noise = noise
        self.remote_peer = remote_peer
        self.remote_public_key = remote_public_key
        self.remote_stream_muxers = tuple(remote_stream_muxers)
        # Bytes that arrived behind the handshake are decrypted on the first read.
        self._pending = noise.receive_data(b"")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(self._noise.encrypt(data))

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._pending:
            return self._take_pending(max_bytes)
        while True:
            data = await self.transport_stream.receive_some(RECEIVE_CHUNK)
            if not data:
                return b""
            plaintext = self._noise.receive_data(data)
            if plaintext:
                self._pending = plaintext
                return self._take_pending(max_bytes)

    def _take_pending(self, max_bytes: int | None) -> bytes:
        pending = self._pending
        if max_bytes is None or len(pending) <= max_bytes:
            self._pending = b""
            return pending
        self._pending = pending[max_bytes:]
        return pending[:max_bytes]

    async def aclose(self) -> None:
        await self.transport_stream.aclose()

    def into_parts(self) -> tuple[trio.abc.Stream, NoiseTransportEngine, bytes]:
        """Hand the channel over: (the transport, the Noise channel, plaintext read ahead).

        For an engine that reads the transport and decrypts by itself. This stream's
        channel is retired: using the stream afterwards raises ``LocalProtocolError``.
        """
        pending, self._pending = self._pending, b""
        return self.transport_stream, self._noise.take(), pending


async def _run_handshake(
    transport: trio.abc.Stream,
    handshake: NoiseHandshake,
    *,
    negotiation: MultistreamDialer | None = None,
) -> NoiseStream:
    outgoing = handshake.data_to_send()
    if negotiation is not None:
        # Lazy multistream-select: the /noise proposal and Noise message 1 go out in one
        # write; the listener's confirmation is read before its Noise reply.
        outgoing = negotiation.data_to_send() + outgoing
    if outgoing:
        await transport.send_all(outgoing)
    pending = b""
    while negotiation is not None and not negotiation.done:
        data = await transport.receive_some(RECEIVE_CHUNK)
        if not data:
            # Not a failed handshake: the listener hung up (at its connection limit, say).
            raise RemoteProtocolError("peer closed the connection during security negotiation")
        negotiation.receive_data(data)
        pending = negotiation.leftover
    if pending:
        handshake.receive_data(pending)
        outgoing = handshake.data_to_send()
        if outgoing:
            await transport.send_all(outgoing)
    while not handshake.complete:
        data = await transport.receive_some(RECEIVE_CHUNK)
        if not data:
            raise HandshakeError("peer closed the connection during the Noise handshake")
        handshake.receive_data(data)
        outgoing = handshake.data_to_send()
        if outgoing:
            await transport.send_all(outgoing)
    assert handshake.remote_peer_id is not None
    assert handshake.remote_public_key is not None
    return NoiseStream(
        transport,
        handshake.into_transport(),
        remote_peer=handshake.remote_peer_id,
        remote_public_key=handshake.remote_public_key,
        remote_stream_muxers=handshake.remote_stream_muxers,
    )


async def secure_outbound(
    transport: trio.abc.Stream,
    identity: Ed25519Identity,
    *,
    expected_peer: PeerId | None,
    stream_muxers: Sequence[str] = (),
    negotiate: bool = False,
) -> NoiseStream:
    """Run Noise as the initiator.

    With ``negotiate``, the multistream-select proposal of /noise is sent together with
    the first Noise message (one write, one round trip saved). Fails with
    ``PeerIdMismatchError`` if the peer is not ``expected_peer``.
    """
    handshake = NoiseHandshake(
        initiator=True,
        identity=identity,
        entropy=os.urandom,
        expected_peer=expected_peer,
        stream_muxers=stream_muxers,
    )
    handshake.initiate()
    negotiation = MultistreamDialer([PROTOCOL_ID]) if negotiate else None
    return await _run_handshake(transport, handshake, negotiation=negotiation)


async def secure_inbound(
    transport: trio.abc.Stream, identity: Ed25519Identity, *, stream_muxers: Sequence[str] = ()
) -> NoiseStream:
    """Run Noise as the responder."""
    handshake = NoiseHandshake(
        initiator=False, identity=identity, entropy=os.urandom, stream_muxers=stream_muxers
    )
    return await _run_handshake(transport, handshake)


def warm_up(identity: Ed25519Identity) -> None:
    """Run one Noise handshake and transport message in memory.

    The first handshake in a process costs several milliseconds more than later ones
    (the crypto library loads its algorithms, protobuf builds its classes); paying that
    when a node starts keeps it off the first real connection.
    """
    initiator = NoiseHandshake(initiator=True, identity=identity, entropy=os.urandom)
    responder = NoiseHandshake(initiator=False, identity=identity, entropy=os.urandom)
    initiator.initiate()
    responder.receive_data(initiator.data_to_send())
    initiator.receive_data(responder.data_to_send())
    responder.receive_data(initiator.data_to_send())
    sender, receiver = initiator.into_transport(), responder.into_transport()
    receiver.receive_data(sender.encrypt(b"warm"))
