"""A framed, request-ID-correlated message channel over one trio stream.

Both SSN protocols (client and federation) send uvarint-length-prefixed CBOR frames
(``neonet.proto.ssn.client_protocol.frame``) on a long-lived stream and match answers to
requests by ID. ``FramedChannel.run`` reads frames and hands each decoded message either
to the waiting ``request`` (when ``is_reply`` says so and the ID is pending) or to the
owner's ``on_message``. Writes cost no task in the common case: on a yamux stream a
frame goes straight into the session's engine (``YamuxStream.queue_bytes_nowait``), whose
writer sends everything queued in one scheduler pass with one ``send_all``; only when the
stream's send window is full (or the stream is another kind) do frames wait in a buffer
that a writer task, started on demand and ended once it is empty, flushes. A sender waits while
more than ``max_buffer`` bytes are buffered. Every bound is explicit: frame size,
buffered bytes, pending requests. An idle channel holds no task of its own: an SSN holds
one per client, so this is memory per client (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, Generic, TypeVar

import trio

from neonet.core.errors import (
    LimitExceededError,
    NeoNetError,
    RemoteProtocolError,
    TransportError,
)
from neonet.core.varint import try_decode_uvarint
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


def _check_body(length: int) -> None:
    if length > MAX_FRAME:
        raise LimitExceededError(f"message of {length} bytes exceeds {MAX_FRAME}")


def _check_frame(data: bytes) -> None:
    """``_check_body`` of a frame's body (``data`` has its length prefix)."""
    if len(data) > MAX_FRAME:  # (shorter: its body is within too, prefix not decoded)
        head = try_decode_uvarint(data, 0)
        _check_body(len(data) - (0 if head is None else head[1]))


async def _logging_errors(function: Callable[..., Awaitable[None]], *args: object) -> None:
    """Run a channel's task in a shared nursery: a bug there must not end the server."""
    try:
        await function(*args)
    except Exception:
        logger.exception("a task of a framed channel failed")


# (on_read_nowait, on_unmatched_reply) of ``FramedChannel.run``
_ReadHooks = tuple[Callable[[list[bytes]], list[bytes]] | None, Callable[[M], None] | None]


class _ReadBatch:
    """Frames queued while a channel handles the frames of one read, per channel (a
    channel there is a yamux stream's, see ``_queue_frame``): each channel's frames go to
    the yamux engine together when the handling ends, or before it awaits anything, in
    one call instead of one per frame (the SSN answers ~25 signals per read).
    ``frames`` is set only within such a synchronous stretch of ``_dispatch``, so
    another task never sees it."""

    frames: dict[FramedChannel[Any], bytearray] | None = None

    @classmethod
    def begin(cls) -> None:
        cls.frames = {}

    @classmethod
    def flush(cls) -> None:
        frames, cls.frames = cls.frames, None
        if not frames:
            return
        for channel, data in frames.items():
            # A channel closed meanwhile has failed its requests already (``_close``).
            with suppress(ChannelClosedError):
                channel._queue_frame(bytes(data))


class FramedChannel(Generic[M]):
    __slots__ = (
        "_buffer",
        "_callbacks",
        "_closed_event",
        "_decode",
        "_drained",
        "_encode",
        "_framer",
        "_is_reply",
        "_next_id",
        "_nursery",
        "_own_nursery",
        "_pending",
        "_queue_nowait",
        "_request_id_of",
        "_writer_running",
        "closed",
        "max_buffer",
        "max_pending",
        "stream",
    )

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
        tasks: trio.Nursery | None = None,
        framer: Callable[[M], bytes | None] | None = None,
    ) -> None:
        """``framer``: builds the whole frame of the messages it knows (the signal path,
        ``frame_message_fast``), None for the others (``encode`` then ``frame``).
        ``tasks``: a longer-lived nursery for the channel's writer and ``spawn``ed tasks
        (a server's, where a nursery per channel would be memory per client); those tasks
        then outlive ``run`` until they finish, and their unexpected errors are logged.
        Without it, ``run`` opens a nursery for them and cancels them when it returns."""
        self.stream = stream
        self._decode = decode
        self._encode = encode
        self._framer = framer
        self._is_reply = is_reply
        self._request_id_of = request_id_of
        self.max_buffer = max_buffer
        self.max_pending = max_pending
        self._pending: dict[int, _Pending[M]] = {}
        # Requests answered through a callback (request_nowait), oldest first; made on use.
        self._callbacks: dict[int, tuple[float, Callable[[M | None], None]]] | None = None
        self._next_id = 1
        self._buffer = bytearray()
        # A yamux stream takes small writes synchronously (see the module docstring).
        self._queue_nowait: Callable[[bytes], None] | None = getattr(
            stream, "queue_bytes_nowait", None
        )
        self._nursery: trio.Nursery | None = tasks
        self._own_nursery = tasks is None
        self._writer_running = False
        # Events are made by whoever waits.
        self._drained: trio.Event | None = None
        self._closed_event: trio.Event | None = None
        self.closed = False

    @property
    def closed_event(self) -> trio.Event:
        """Set once the channel has closed."""
        if self._closed_event is None:
            self._closed_event = trio.Event()
            if self.closed:
                self._closed_event.set()
        return self._closed_event

    def new_request_id(self) -> int:
        rid = self._next_id
        self._next_id = rid + 1 if rid < (1 << 62) else 1
        return rid

    async def send(self, message: M) -> None:
        """Queue ``message``; waits while the buffer is over ``max_buffer`` bytes."""
        self.send_nowait(message)
        while len(self._buffer) > self.max_buffer and not self.closed:
            if self._drained is None:
                self._drained = trio.Event()
            await self._drained.wait()

    def send_nowait(self, message: M) -> None:
        if self.closed:
            raise ChannelClosedError("the channel is closed")
        data = None if self._framer is None else self._framer(message)
        if data is None:
            body = self._encode(message)
            _check_body(len(body))
            data = frame(body)
        else:
            _check_frame(data)
        self._queue_frame(data)

    def send_frame_nowait(self, data: bytes) -> None:
        """``send_nowait`` of a message already framed (length prefix included; the
        signal path's frames from ``neonet.core.backend.ssn_wire``). ``MAX_FRAME`` bounds
        the body, as for ``send_nowait`` and the reader's ``FrameDecoder``."""
        if self.closed:
            raise ChannelClosedError("the channel is closed")
        _check_frame(data)
        self._queue_frame(data)

    def send_frames_nowait(self, data: bytes) -> None:
        """``send_frame_nowait`` of several frames at once, each already within
        ``MAX_FRAME`` (the per-read blobs of ``neonet.core.backend.SignalRouter``)."""
        if self.closed:
            raise ChannelClosedError("the channel is closed")
        self._queue_frame(data)

    def _queue_frame(self, data: bytes) -> None:
        if self._queue_nowait is not None and not self._buffer and not self._writer_running:
            batch = _ReadBatch.frames
            if batch is not None:  # sent when the current read's frames are handled
                queued = batch.get(self)
                if queued is None:
                    batch[self] = bytearray(data)
                else:
                    queued += data
                return
            try:
                self._queue_nowait(data)
                return
            except trio.WouldBlock:
                pass  # the send window is full: the writer task waits for it
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._close()
                raise ChannelClosedError(f"the channel's stream is gone: {exc}") from None
        self._buffer += data
        if not self._writer_running and self._nursery is not None:
            self._writer_running = True
            self._start(self._writer)

    def spawn(self, function: Callable[..., Awaitable[None]], *args: object) -> None:
        """Run ``function(*args)`` in a task of the channel's nursery (for answers)."""
        if self._nursery is None or self.closed:
            raise ChannelClosedError("the channel is not running")
        self._start(function, *args)

    def _start(self, function: Callable[..., Awaitable[None]], *args: object) -> None:
        assert self._nursery is not None
        if self._own_nursery:
            self._nursery.start_soon(function, *args)
        else:
            self._nursery.start_soon(_logging_errors, function, *args)

    @property
    def buffered(self) -> int:
        """Bytes waiting for the send window (0 in the common case)."""
        return len(self._buffer)

    def request_nowait(
        self, message: M, on_reply: Callable[[M | None], None], *, deadline: float
    ) -> None:
        """Send a request without a task waiting for it: ``on_reply(answer)`` is called
        from the reader when the answer comes, ``on_reply(None)`` when the channel closes
        or ``expire`` finds the request past ``deadline`` (``trio.current_time()``
        seconds; every request of a channel should use the same timeout, since ``expire``
        looks at the oldest first). Raises ``ChannelClosedError``/``LimitExceededError``.
        """
        self._request_nowait(self._request_id_of(message), message, None, on_reply, deadline)

    def request_frame_nowait(
        self,
        request_id: int,
        data: bytes,
        on_reply: Callable[[M | None], None],
        *,
        deadline: float,
    ) -> None:
        """``request_nowait`` of a request already framed, whose ID is ``request_id``."""
        self._request_nowait(request_id, None, data, on_reply, deadline)

    def _request_nowait(
        self,
        request_id: int,
        message: M | None,
        data: bytes | None,
        on_reply: Callable[[M | None], None],
        deadline: float,
    ) -> None:
        """``request_nowait`` (``message``) or ``request_frame_nowait`` (``data``)."""
        callbacks = self._callbacks
        if callbacks is None:
            callbacks = self._callbacks = {}
        if len(self._pending) + len(callbacks) >= self.max_pending:
            raise LimitExceededError(f"{self.max_pending} requests already pending")
        if data is None:
            assert message is not None
            self.send_nowait(message)
        else:
            self.send_frame_nowait(data)
        callbacks[request_id] = (deadline, on_reply)

    def take_reply_callback(self, request_id: int) -> Callable[[M | None], None] | None:
        """The ``request_nowait`` callback waiting for ``request_id``, taken out (None if
        there is none): for an owner that reads that answer's frame itself
        (``on_frame_nowait``) and then calls it."""
        callbacks = self._callbacks
        if not callbacks:
            return None
        entry = callbacks.pop(request_id, None)
        return None if entry is None else entry[1]

    def expire(self, now: float) -> None:
        """Fail (``on_reply(None)``) the ``request_nowait`` requests past their deadline."""
        callbacks = self._callbacks
        while callbacks:
            rid, (deadline, on_reply) = next(iter(callbacks.items()))
            if deadline > now:
                return
            del callbacks[rid]
            on_reply(None)

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
        on_message_nowait: Callable[[M], bool] | None = None,
        on_frame_nowait: Callable[[bytes], bool] | None = None,
        on_read_nowait: Callable[[list[bytes]], list[bytes]] | None = None,
        on_unmatched_reply: Callable[[M], None] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Read (in this task) until the stream ends; then fail every pending request.

        The frame bodies of each read go to ``on_read_nowait`` first when given (one
        synchronous call per read: the SSN's ``SignalRouter``), which returns those it
        did not take, in order. Each of those goes to ``on_frame_nowait`` first when
        given (a synchronous handler of raw frames: the SSN's signal path); if it returns
        False, it is decoded, and the message goes to ``on_message_nowait`` when given (a
        synchronous handler for the common case: no coroutine per message); if that
        returns False, to ``on_message``. A reply that no request waits for goes to
        ``on_unmatched_reply`` when given (else it is dropped). Raises
        ``RemoteProtocolError`` for a malformed frame (the caller closes the stream).
        """
        decoder = FrameDecoder()
        hooks = (on_read_nowait, on_unmatched_reply)
        if not self._own_nursery:
            try:
                self._start_buffered_writer()
                task_status.started()
                await self._read(decoder, on_message, on_message_nowait, on_frame_nowait, hooks)
            finally:
                self._close()
            return
        error: RemoteProtocolError | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._start_buffered_writer()
                task_status.started()
                try:
                    await self._read(decoder, on_message, on_message_nowait, on_frame_nowait, hooks)
                except RemoteProtocolError as exc:
                    error = exc  # raised below as itself, not inside the nursery's group
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self._close()
        if error is not None:
            raise error

    def _start_buffered_writer(self) -> None:
        if self._buffer and not self._writer_running:  # queued before run
            self._writer_running = True
            self._start(self._writer)

    async def _read(
        self,
        decoder: FrameDecoder,
        on_message: Callable[[M], Awaitable[None]],
        on_message_nowait: Callable[[M], bool] | None,
        on_frame_nowait: Callable[[bytes], bool] | None = None,
        hooks: _ReadHooks[M] = (None, None),
    ) -> None:
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, NeoNetError):
                return
            if not data:
                return
            await self._dispatch(
                decoder.feed(data), on_message, on_message_nowait, on_frame_nowait, hooks
            )
            # The last frame and message are not kept alive while the channel is idle.
            del data

    async def _dispatch(
        self,
        bodies: list[bytes],
        on_message: Callable[[M], Awaitable[None]],
        on_message_nowait: Callable[[M], bool] | None = None,
        on_frame_nowait: Callable[[bytes], bool] | None = None,
        hooks: _ReadHooks[M] = (None, None),
    ) -> None:
        on_read_nowait, on_unmatched_reply = hooks
        _ReadBatch.begin()
        try:
            if on_read_nowait is not None and bodies:
                bodies = on_read_nowait(bodies)
            for body in bodies:
                if on_frame_nowait is not None and on_frame_nowait(body):
                    continue
                message = self._decode(body)
                if self._is_reply(message):
                    rid = self._request_id_of(message)
                    pending = self._pending.get(rid)
                    if pending is not None:
                        if not pending.event.is_set():
                            pending.reply = message
                            pending.event.set()
                    else:
                        callback = self._callbacks.pop(rid, None) if self._callbacks else None
                        if callback is not None:
                            callback[1](message)
                        elif on_unmatched_reply is not None:
                            on_unmatched_reply(message)
                    continue
                if on_message_nowait is None or not on_message_nowait(message):
                    _ReadBatch.flush()  # (no frame waits while this task does)
                    await on_message(message)
                    _ReadBatch.begin()
        finally:
            _ReadBatch.flush()

    def _close(self) -> None:
        self.closed = True
        for event in (self._closed_event, self._drained):
            if event is not None:
                event.set()
        for pending in self._pending.values():
            pending.event.set()
        callbacks, self._callbacks = self._callbacks, None
        for _, on_reply in (callbacks or {}).values():
            on_reply(None)

    async def _writer(self) -> None:
        """Flush the buffer until it is empty (frames queued meanwhile go behind)."""
        try:
            while self._buffer and not self.closed:
                data = bytes(self._buffer)
                self._buffer.clear()
                drained, self._drained = self._drained, None
                if drained is not None:
                    drained.set()
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, NeoNetError) as exc:
            logger.debug("channel writer stopped: %s", exc)
            self._close()
            await trio.aclose_forcefully(self.stream)
        finally:
            self._writer_running = False

    async def aclose(self) -> None:
        self._close()
        await trio.aclose_forcefully(self.stream)
