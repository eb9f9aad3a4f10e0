"""libp2p's /ws transport: the libp2p byte stream carried in binary WebSocket messages.

Message boundaries carry no meaning; the HTTP upgrade uses path "/". wsproto does the
WebSocket protocol; this module turns its messages into a trio byte stream. WebSocket
has no half-close, so ``WebSocketStream`` is a plain ``trio.abc.Stream``; the caller
bounds handshake time with a cancel scope.
"""

from __future__ import annotations

import contextlib
import operator
from collections import deque
from collections.abc import Sequence

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError as WsLocalProtocolError
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

from neonet.core.errors import RemoteProtocolError, TransportError

MAX_HANDSHAKE_BYTES = 16 * 1024
# Each send_all is split into messages of at most this size.
MAX_SEND_MESSAGE = 256 * 1024
RECEIVE_CHUNK = 256 * 1024
CLOSE_TIMEOUT = 1.0


class _Busy:
    __slots__ = ("_held", "_what")

    def __init__(self, what: str) -> None:
        self._what = what
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(f"another task is already {self._what}")
        self._held = True

    def __exit__(self, *exc_info: object) -> None:
        self._held = False


class WebSocketStream(trio.abc.Stream):
    """A byte stream over an established WebSocket connection."""

    def __init__(
        self, transport: trio.abc.Stream, connection: WSConnection, pending: Sequence[Event] = ()
    ) -> None:
        self.transport_stream = transport
        self._ws = connection
        self._received: deque[bytes] = deque()
        self._eof = False
        self._closed = False
        self._broken: BaseException | None = None
        self._send_busy = _Busy("sending")
        self._receive_busy = _Busy("receiving")
        self._send_lock = trio.StrictFIFOLock()
        self._control = bytearray()
        for event in pending:
            self._handle(event)

    def _handle(self, event: Event) -> None:
        if isinstance(event, BytesMessage):
            if event.data:
                self._received.append(bytes(event.data))
        elif isinstance(event, TextMessage):
            raise RemoteProtocolError("text WebSocket message on a libp2p connection")
        elif isinstance(event, Ping):
            self._control += self._ws.send(event.response())
        elif isinstance(event, CloseConnection):
            self._eof = True
            with contextlib.suppress(WsLocalProtocolError):
                self._control += self._ws.send(event.response())

    async def _flush_control(self) -> None:
        if self._control and not self._closed:
            data = bytes(self._control)
            self._control.clear()
            async with self._send_lock:
                await self.transport_stream.send_all(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_busy:
            if self._closed:
                raise trio.ClosedResourceError("WebSocket stream was closed")
            if self._broken is not None or self._eof:
                raise trio.BrokenResourceError("WebSocket connection is closed") from self._broken
            view = memoryview(data).cast("B")
            if not view:
                await trio.lowlevel.checkpoint()
                return
            try:
                frames = b"".join(
                    self._ws.send(BytesMessage(data=bytes(view[start : start + MAX_SEND_MESSAGE])))
                    for start in range(0, len(view), MAX_SEND_MESSAGE)
                )
            except WsLocalProtocolError as exc:
                raise trio.BrokenResourceError("WebSocket connection is closing") from exc
            async with self._send_lock:
                await self.transport_stream.send_all(frames)

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_busy:
            if self._closed:
                raise trio.ClosedResourceError("WebSocket stream was closed")
            await self.transport_stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        with self._receive_busy:
            if max_bytes is not None:
                max_bytes = operator.index(max_bytes)  # TypeError for non-integers
                if max_bytes < 1:
                    raise ValueError("max_bytes must be at least 1")
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("WebSocket stream was closed")
                if self._received:
                    chunk = self._received.popleft()
                    if max_bytes is not None and len(chunk) > max_bytes:
                        self._received.appendleft(chunk[max_bytes:])
                        chunk = chunk[:max_bytes]
                    await trio.lowlevel.checkpoint()
                    return chunk
                if self._eof:
                    await self._flush_control()
                    await trio.lowlevel.checkpoint()
                    return b""
                if self._broken is not None:
                    raise trio.BrokenResourceError("WebSocket connection broke") from self._broken
                data = await self.transport_stream.receive_some(RECEIVE_CHUNK)
                if not data:
                    # TCP closed without a Close frame: end of stream all the same.
                    self._eof = True
                    continue
                try:
                    self._ws.receive_data(bytes(data))
                    for event in self._ws.events():
                        self._handle(event)
                except WsRemoteProtocolError as exc:
                    self._broken = exc
                    raise RemoteProtocolError(f"bad WebSocket data: {exc}") from exc
                await self._flush_control()

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            if not self._eof and self._broken is None:
                with trio.move_on_after(CLOSE_TIMEOUT) as scope:
                    scope.shield = True
                    try:
                        data = self._ws.send(CloseConnection(code=1000))
                        await self.transport_stream.send_all(data)
                    except (
                        WsLocalProtocolError,
                        trio.BrokenResourceError,
                        trio.ClosedResourceError,
                    ):
                        pass
        finally:
            await self.transport_stream.aclose()


async def _read_handshake(transport: trio.abc.Stream, ws: WSConnection, limit: int) -> list[Event]:
    received = 0
    while True:
        data = await transport.receive_some(4096)
        if not data:
            raise TransportError("connection closed during the WebSocket handshake")
        received += len(data)
        try:
            ws.receive_data(bytes(data))
            events = list(ws.events())
        except WsRemoteProtocolError as exc:
            if exc.event_hint is not None:
                with contextlib.suppress(trio.BrokenResourceError, WsLocalProtocolError):
                    await transport.send_all(ws.send(exc.event_hint))
            raise TransportError(f"bad WebSocket handshake: {exc}") from exc
        if events:
            return events
        if received > limit:
            raise TransportError(f"WebSocket handshake larger than {limit} bytes")


async def connect_websocket(
    transport: trio.abc.Stream,
    *,
    host: str,
    path: str = "/",
    max_handshake_bytes: int = MAX_HANDSHAKE_BYTES,
) -> WebSocketStream:
    """Run the client handshake on an open TCP stream."""
    ws = WSConnection(ConnectionType.CLIENT)
    await transport.send_all(ws.send(Request(host=host, target=path)))
    events = await _read_handshake(transport, ws, max_handshake_bytes)
    first, rest = events[0], events[1:]
    if isinstance(first, RejectConnection):
        raise TransportError(f"WebSocket upgrade refused with HTTP {first.status_code}")
    if not isinstance(first, AcceptConnection):
        raise TransportError(f"unexpected WebSocket handshake event {type(first).__name__}")
    return WebSocketStream(transport, ws, rest)


async def accept_websocket(
    transport: trio.abc.Stream, *, max_handshake_bytes: int = MAX_HANDSHAKE_BYTES
) -> WebSocketStream:
    """Run the server handshake on an accepted TCP stream (any path is accepted)."""
    ws = WSConnection(ConnectionType.SERVER)
    events = await _read_handshake(transport, ws, max_handshake_bytes)
    first, rest = events[0], events[1:]
    if not isinstance(first, Request):
        raise TransportError(f"expected a WebSocket upgrade request, got {type(first).__name__}")
    await transport.send_all(ws.send(AcceptConnection()))
    return WebSocketStream(transport, ws, rest)
