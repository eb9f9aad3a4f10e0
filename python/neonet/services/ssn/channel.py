"""A framed, request-ID-correlated message channel over one trio stream.

Both SSN protocols (client and federation) send uvarint-length-prefixed CBOR frames
(``neonet.proto.ssn.client_protocol.frame``) on a long-lived stream and match answers to
requests by ID. ``FramedChannel.run`` reads frames and hands each decoded message either
to the waiting ``request`` (when ``is_reply`` says so and the ID is pending) or to the
owner's ``on_message``. Writes are coalesced: ``send`` appends a frame to a buffer that
one writer task flushes with a single ``send_all``, so many small signals share a write;
a sender waits while more than ``max_buffer`` bytes are queued. Every bound is explicit:
frame size, buffered bytes, pending requests.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

from neonet.core.errors import (
    LimitExceededError,
    NeoNetError,
    RemoteProtocolError,
    TransportError,
)
from neonet.proto.ssn.client_protocol import MAX_FRAME, FrameDecoder, frame

logger = logging.getLogger("neonet.ssn.channel")
M = TypeVar("M")


class ChannelClosedError(TransportError):
    """The channel's stream ended (the other side went away) before the answer came."""


class _Pending(Generic[M]):
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.reply: M | None = None


class FramedChannel(Generic[M]):
    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        decode: Callable[[bytes], M],
        encode: Callable[[M], bytes],
        is_reply: Callable[[M], bool],
        request_id_of: Callable[[M], int],
        max_buffer: int = 1 << 20,
        max_pending: int = 4096,
    ) -> None:
        self.stream = stream
        self._decode = decode
        self._encode = encode
        self._is_reply = is_reply
        self._request_id_of = request_id_of
        self.max_buffer = max_buffer
        self.max_pending = max_pending
        self._pending: dict[int, _Pending[M]] = {}
        self._next_id = 1
        self._buffer = bytearray()
        self._wake_writer = trio.Event()
        self._drained = trio.Event()
        self.closed = False
        self.closed_event = trio.Event()

    def new_request_id(self) -> int:
        rid = self._next_id
        self._next_id = rid + 1 if rid < (1 << 62) else 1
        return rid

    async def send(self, message: M) -> None:
        """Queue ``message``; waits while the buffer is over ``max_buffer`` bytes."""
        self.send_nowait(message)
        while len(self._buffer) > self.max_buffer and not self.closed:
            await self._drained.wait()

    def send_nowait(self, message: M) -> None:
        if self.closed:
            raise ChannelClosedError("the channel is closed")
        body = self._encode(message)
        if len(body) > MAX_FRAME:
            raise LimitExceededError(f"message of {len(body)} bytes exceeds {MAX_FRAME}")
        self._buffer += frame(body)
        self._wake_writer.set()

    async def request(self, message: M, *, answer_within: float) -> M:
        """Send a request (its ID from ``new_request_id``) and wait for the answer."""
        rid = self._request_id_of(message)
        if len(self._pending) >= self.max_pending:
            raise LimitExceededError(f"{self.max_pending} requests already pending")
        pending: _Pending[M] = _Pending()
        self._pending[rid] = pending
        try:
            with trio.fail_after(answer_within):
                await self.send(message)
                await pending.event.wait()
        finally:
            self._pending.pop(rid, None)
        if pending.reply is None:
            raise ChannelClosedError("the channel closed before the answer came")
        return pending.reply

    async def run(
        self,
        on_message: Callable[[M], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Read and write until the stream ends; then fail every pending request.

        Raises ``RemoteProtocolError`` for a malformed frame (the caller closes the stream).
        """
        decoder = FrameDecoder()
        error: RemoteProtocolError | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                task_status.started()
                try:
                    await self._read(decoder, on_message)
                except RemoteProtocolError as exc:
                    error = exc  # raised below as itself, not inside the nursery's group
                nursery.cancel_scope.cancel()
        finally:
            self._close()
        if error is not None:
            raise error

    async def _read(
        self, decoder: FrameDecoder, on_message: Callable[[M], Awaitable[None]]
    ) -> None:
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, NeoNetError):
                return
            if not data:
                return
            for body in decoder.feed(data):
                message = self._decode(body)
                if self._is_reply(message):
                    pending = self._pending.get(self._request_id_of(message))
                    if pending is not None and not pending.event.is_set():
                        pending.reply = message
                        pending.event.set()
                    continue
                await on_message(message)

    def _close(self) -> None:
        self.closed = True
        self.closed_event.set()
        self._drained.set()
        self._wake_writer.set()
        for pending in self._pending.values():
            pending.event.set()

    async def _writer(self) -> None:
        try:
            while not self.closed:
                await self._wake_writer.wait()
                self._wake_writer = trio.Event()
                if not self._buffer:
                    continue
                data = bytes(self._buffer)
                self._buffer.clear()
                drained, self._drained = self._drained, trio.Event()
                drained.set()
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, NeoNetError) as exc:
            logger.debug("channel writer stopped: %s", exc)
            self._close()
            await trio.aclose_forcefully(self.stream)

    async def aclose(self) -> None:
        self._close()
        await trio.aclose_forcefully(self.stream)
