"""multistream-select over any trio stream: the async side of ``neonet.proto.multistream``.

Each helper returns the selected protocol and the bytes the peer sent right behind the
negotiation (which belong to the next layer and must not be lost).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import trio

from neonet.core.errors import RemoteProtocolError
from neonet.net.yamux_session import YamuxStream
from neonet.proto.multistream import (
    MultistreamDialer,
    MultistreamListener,
    accept_pipelined_proposal,
)

READ_CHUNK = 4096


async def send_preamble(stream: trio.abc.Stream, data: bytes) -> None:
    """Send negotiation bytes; on a yamux stream they wait for the next write or read.

    Negotiation messages are nearly always followed at once by a read or by data on the
    same stream, so holding them back one scheduler pass saves a packet. Not a
    checkpoint when queued: every caller reads or writes right after.
    """
    if isinstance(stream, YamuxStream):
        try:
            stream.queue_bytes_nowait(data)
        except trio.WouldBlock:
            pass
        else:
            return
    await stream.send_all(data)


async def select_protocol(stream: trio.abc.Stream, protocols: Sequence[str]) -> tuple[str, bytes]:
    """Propose ``protocols`` in order (header and first proposal in one write)."""
    dialer = MultistreamDialer(protocols)
    await send_preamble(stream, dialer.data_to_send())
    while not dialer.done:
        data = await stream.receive_some(READ_CHUNK)
        if not data:
            raise RemoteProtocolError("peer closed the stream during protocol negotiation")
        dialer.receive_data(data)
        outgoing = dialer.data_to_send()
        if outgoing:
            await send_preamble(stream, outgoing)
    assert dialer.selected is not None
    return dialer.selected, dialer.leftover


async def accept_protocol(
    stream: trio.abc.Stream, supported: Callable[[str], bool] | Collection[str]
) -> tuple[str, bytes]:
    """Answer the peer's proposals until one of ``supported`` is chosen."""
    listener = MultistreamListener(supported)
    outgoing = listener.data_to_send()
    if outgoing:
        await send_preamble(stream, outgoing)
    while not listener.done:
        data = await stream.receive_some(READ_CHUNK)
        if not data:
            raise RemoteProtocolError("peer closed the stream during protocol negotiation")
        listener.receive_data(data)
        outgoing = listener.data_to_send()
        if outgoing:
            await send_preamble(stream, outgoing)
    assert listener.selected is not None
    return listener.selected, listener.leftover


def accept_buffered(
    stream: YamuxStream, supported: Callable[[str], bool] | Collection[str]
) -> tuple[str, bytes] | None:
    """Negotiate from the bytes the peer already sent, without waiting; None if that
    is not enough (nothing is consumed then, and ``accept_protocol`` takes over).

    The common case: a dialer that knew we speak the protocol sent the header, its
    proposal and its first data at once. Skipping the awaits (and the timeout's cancel
    scope around them) saves a tenth of a small stream's CPU on the listener, and
    ``accept_pipelined_proposal`` (no engine object, the answer is the proposal's own
    bytes) another tenth. Proposals it does not take (a second round, "ls", anything
    malformed) are left to ``accept_protocol``.
    """
    try:
        data = stream.receive_some_nowait()
    except (trio.WouldBlock, trio.ClosedResourceError):
        return None
    is_supported = supported if callable(supported) else supported.__contains__
    accepted = accept_pipelined_proposal(data, is_supported)
    if accepted is None:
        stream.unread(data)  # accept_protocol reads them again through the full engine
        return None
    protocol, answer, leftover = accepted
    try:
        stream.queue_bytes_nowait(answer)
    except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
        stream.unread(data)
        return None
    return protocol, leftover
