"""multistream-select over any trio stream: the async side of ``neonet.proto.multistream``.

Each helper returns the selected protocol and the bytes the peer sent right behind the
negotiation (which belong to the next layer and must not be lost).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import trio

from neonet.core.errors import RemoteProtocolError
from neonet.proto.multistream import MultistreamDialer, MultistreamListener

READ_CHUNK = 4096


async def select_protocol(stream: trio.abc.Stream, protocols: Sequence[str]) -> tuple[str, bytes]:
    """Propose ``protocols`` in order (header and first proposal in one write)."""
    dialer = MultistreamDialer(protocols)
    await stream.send_all(dialer.data_to_send())
    while not dialer.done:
        data = await stream.receive_some(READ_CHUNK)
        if not data:
            raise RemoteProtocolError("peer closed the stream during protocol negotiation")
        dialer.receive_data(data)
        outgoing = dialer.data_to_send()
        if outgoing:
            await stream.send_all(outgoing)
    assert dialer.selected is not None
    return dialer.selected, dialer.leftover


async def accept_protocol(
    stream: trio.abc.Stream, supported: Callable[[str], bool] | Collection[str]
) -> tuple[str, bytes]:
    """Answer the peer's proposals until one of ``supported`` is chosen."""
    listener = MultistreamListener(supported)
    outgoing = listener.data_to_send()
    if outgoing:
        await stream.send_all(outgoing)
    while not listener.done:
        data = await stream.receive_some(READ_CHUNK)
        if not data:
            raise RemoteProtocolError("peer closed the stream during protocol negotiation")
        listener.receive_data(data)
        outgoing = listener.data_to_send()
        if outgoing:
            await stream.send_all(outgoing)
    assert listener.selected is not None
    return listener.selected, listener.leftover
