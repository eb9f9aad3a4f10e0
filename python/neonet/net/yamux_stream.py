"""The streams of a yamux connection: ``YamuxStream``, one yamux stream as a trio
half-closeable stream, fed and drained by its ``YamuxSession`` (``neonet.net.yamux_session``,
which re-exports it; it lived there before).

Streams are trio ``HalfCloseableStream``s with TCP-like close semantics: ``send_eof``
sends FIN; ``aclose`` sends FIN if needed and stops reading, and data that arrives on a
stream we stopped reading (or that was still unread at ``aclose``) makes us reset it,
so the peer's writer sees ``BrokenResourceError`` instead of writing into a void.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from neonet.core.errors import NegotiationError, RemoteProtocolError
from neonet.net.conflict import ConflictGuard
from neonet.proto.multistream import MultistreamDialer

if TYPE_CHECKING:
    from neonet.net.yamux_session import YamuxSession

# A read at least this large suggests more is waiting: read again before waiting.
LARGE_READ = 64 * 1024


class YamuxStream(trio.abc.HalfCloseableStream):
    """One yamux stream as a trio half-closeable stream. ``protocol`` is set after negotiation."""

    def __init__(self, session: YamuxSession, stream_id: int) -> None:
        self._session = session
        self.stream_id = stream_id
        self.protocol: str | None = None
        # Set when the protocol was proposed optimistically: the peer's answer is read
        # (and checked) before the first application bytes.
        self._pending_negotiation: MultistreamDialer | None = None
        # A list, not a deque: an empty deque takes ~600 bytes, and streams rarely hold
        # more than a chunk or two.
        self._buffer: list[bytes] = []
        self._buffered = 0
        # Bytes pushed back by unread() were already credited to the peer's window.
        self._preconsumed = 0
        # The task waiting in receive_some (rescheduled directly: a trio.Event costs ~700
        # bytes while waited on, and SSN client streams wait for most of their life).
        self._receiver: trio.lowlevel.Task | None = None
        # Made by whoever waits (most streams never do): see _wake_sender.
        self._send_event: trio.Event | None = None
        self._remote_finished = False
        self._reset = False
        self._local_finished = False
        self._closed = False
        self._send_conflict = ConflictGuard("sending")
        self._receive_conflict = ConflictGuard("receiving")
        self._data_callback: Callable[[bytes], None] | None = None
        self.callback_error: Exception | None = None

    @property
    def remote_peer(self) -> object:
        return self._session.remote_peer

    @property
    def session(self) -> YamuxSession:
        return self._session

    def _wake_receiver(self) -> None:
        task = self._receiver
        if task is not None:
            self._receiver = None
            trio.lowlevel.reschedule(task)

    async def _wait_receivable(self) -> None:
        self._receiver = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort_receive)

    def _abort_receive(self, raise_cancel: object) -> trio.lowlevel.Abort:
        self._receiver = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _wake_sender(self) -> None:
        event = self._send_event
        if event is not None:
            self._send_event = None
            event.set()

    # --- events from the session -------------------------------------------------
    def _on_data(self, data: bytes) -> None:
        if self._closed:
            self._session._engine_consume(self.stream_id, len(data))
            if self._pending_negotiation is not None and self._absorb_negotiation(data):
                return  # only the peer's protocol confirmation arrived: nothing to refuse
            # We stopped reading: the peer is writing into a closed stream.
            self._session._reset(self.stream_id)
            return
        if self._data_callback is not None:
            self._session._engine_consume(self.stream_id, len(data))
            self._call_back(self._data_callback, data)
            return
        self._buffer.append(data)
        self._buffered += len(data)
        self._wake_receiver()

    def _call_back(self, callback: Callable[[bytes], None], data: bytes) -> None:
        try:
            callback(data)
        except Exception as exc:  # the stream's fault, not the connection's
            self.callback_error = exc
            self._data_callback = None
            self.reset()

    def _on_end(self) -> None:
        self._remote_finished = True
        self._wake_receiver()

    def _on_reset(self) -> None:
        self._reset = True
        self._wake_receiver()
        self._wake_sender()

    def _on_send_window(self) -> None:
        self._wake_sender()

    # --- trio.abc.HalfCloseableStream ---------------------------------------------
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_conflict:
            self._check_can_send()
            if not data:
                await trio.lowlevel.checkpoint()
                return
            view = memoryview(data).cast("B")
            session = self._session
            while view:
                sent = session._engine_send(self.stream_id, view)
                if sent:
                    view = view[sent:]
                    await session._output_flushed_enough()
                    self._check_can_send()
                else:
                    self._send_event = event = trio.Event()
                    await event.wait()
                    self._check_can_send()
            if not data:
                await trio.lowlevel.checkpoint()

    def send_nowait(self, data: bytes | bytearray | memoryview) -> int:
        """Queue what the send window takes of ``data`` now, without blocking; return how
        many bytes that was (the caller sends the rest with ``send_all``).

        For writers that produce many small messages from synchronous code (pubsub): no
        task switch per message; the session's writer collects everything queued in one
        scheduler pass into one transport write. The output is bounded by the window.
        """
        with self._send_conflict:
            self._check_can_send()
            if not data:
                return 0
            return self._session._engine_send(self.stream_id, memoryview(data).cast("B"))

    def set_data_callback(self, callback: Callable[[bytes], None]) -> None:
        """From now on, give every received chunk to ``callback`` at once, from the
        session's reader (bytes already buffered go to it now, in order).

        For handlers that do a little synchronous work per chunk and never block (pubsub):
        no task switch per read, and the window is credited as each chunk is handed over
        (before the callback runs).
        ``receive_some`` then only reports the end (b"") or a reset. An exception from
        the callback resets the stream and is kept in ``callback_error``.
        """
        with self._receive_conflict:
            if self._closed:
                raise trio.ClosedResourceError("stream was closed")
            if self._pending_negotiation is not None:
                raise trio.BusyResourceError("the stream's negotiation is still pending")
            while self._buffer:
                self._call_back(callback, self._take(None))
                if self.callback_error is not None:
                    return
            self._data_callback = callback

    def _check_can_send(self) -> None:
        if self._closed or self._local_finished:
            raise trio.ClosedResourceError("stream was closed for sending")
        if self._reset:
            raise trio.BrokenResourceError("stream was reset by the peer")
        self._session._check_alive()

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_conflict:
            self._check_can_send()
            while not self._reset and self._session._send_window(self.stream_id) == 0:
                self._send_event = event = trio.Event()
                await event.wait()
                if self._closed:
                    raise trio.ClosedResourceError("stream was closed")
            await trio.lowlevel.checkpoint()

    def receive_some_nowait(self) -> bytes:
        """The first buffered chunk, or ``trio.WouldBlock`` when nothing is buffered yet.

        For a listener that negotiates from bytes already here (see
        ``neonet.net.negotiate.accept_buffered``); not for streams awaiting their own
        negotiation answer.
        """
        with self._receive_conflict:
            if self._closed:
                raise trio.ClosedResourceError("stream was closed")
            if not self._buffer or self._pending_negotiation is not None:
                raise trio.WouldBlock
            return self._take(None)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        with self._receive_conflict:
            if max_bytes is not None:
                max_bytes = operator.index(max_bytes)  # TypeError for non-integers
                if max_bytes < 1:
                    raise ValueError("max_bytes must be at least 1")
            # Having blocked in wait() was a checkpoint already (it yielded and could be
            # cancelled): what it waited for is returned without another scheduler pass.
            waited = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("stream was closed")
                if self._buffer:
                    if self._pending_negotiation is not None:
                        self._negotiate_from_buffer()
                        continue
                    chunk = self._take(max_bytes)
                    if not waited:
                        await trio.lowlevel.checkpoint()
                    return chunk
                if self._pending_negotiation is not None and (self._remote_finished or self._reset):
                    self._pending_negotiation = None
                    raise NegotiationError(
                        f"peer closed the stream before accepting {self.protocol}"
                    )
                if self._reset:
                    raise trio.BrokenResourceError("stream was reset by the peer")
                if self._remote_finished:
                    if not waited:
                        await trio.lowlevel.checkpoint()
                    return b""
                if self._session._dead is not None:
                    raise trio.BrokenResourceError("connection closed") from self._session._dead
                await self._wait_receivable()
                waited = True

    def _take(self, max_bytes: int | None) -> bytes:
        buffer = self._buffer
        first = buffer[0]
        if len(buffer) > 1 and max_bytes is not None and len(first) < min(max_bytes, LARGE_READ):
            # Many small frames of one read (SSN signals): one chunk for all of them, so
            # the reader handles the read in one pass instead of one scheduler pass each.
            # Large chunks (bulk: one per socket read) are handed out as they are: joining
            # them copied nearly every byte of a bulk transfer once more.
            count, size = 1, len(first)
            while (
                count < len(buffer)
                and len(buffer[count]) < LARGE_READ
                and size + len(buffer[count]) <= max_bytes
            ):
                size += len(buffer[count])
                count += 1
            if count > 1:
                first = b"".join(buffer[:count])
                del buffer[1:count]
                buffer[0] = first
        if max_bytes is None or len(first) <= max_bytes:
            del buffer[0]
            chunk = first
        else:
            chunk = first[:max_bytes]
            self._buffer[0] = first[max_bytes:]
        self._buffered -= len(chunk)
        credit = len(chunk)
        if self._preconsumed:
            already = min(self._preconsumed, credit)
            self._preconsumed -= already
            credit -= already
        if credit:
            self._session._engine_consume(self.stream_id, credit)
        return chunk

    def queue_bytes_nowait(self, data: bytes) -> None:
        """Queue ``data`` to leave one scheduler pass later, with whatever the tasks
        write in that pass (the writer is woken at once, but collects late).

        For small protocol preambles (multistream-select) that are nearly always followed
        at once by data or by the handler's first answer: a loopback send costs ~30 us
        here, so they should share one. Raises ``trio.WouldBlock`` (queuing nothing) when
        the send window cannot take all of ``data``.
        """
        with self._send_conflict:
            self._check_can_send()
            session = self._session
            if session._send_window(self.stream_id) < len(data):
                raise trio.WouldBlock
            sent = session._engine_queue(self.stream_id, memoryview(data))
            assert sent == len(data)
            session._wake_writer_deferred()

    def expect_negotiation(self, dialer: MultistreamDialer) -> None:
        """Read ``dialer``'s answer from the stream before any application data."""
        self._pending_negotiation = dialer

    def _negotiate_from_buffer(self) -> None:
        dialer = self._pending_negotiation
        assert dialer is not None
        chunk = self._take(None)
        try:
            dialer.receive_data(chunk)
        except (NegotiationError, RemoteProtocolError):
            self._pending_negotiation = None
            self.reset()
            raise
        if dialer.done:
            self._pending_negotiation = None
            self.unread(dialer.leftover)

    def unread(self, data: bytes) -> None:
        """Put bytes read past a negotiation back in front of the stream."""
        if data:
            self._buffer.insert(0, data)
            self._buffered += len(data)
            self._preconsumed += len(data)
            self._wake_receiver()

    async def send_eof(self) -> None:
        with self._send_conflict:
            if self._closed:
                raise trio.ClosedResourceError("stream was closed")
            if not self._local_finished and not self._reset:
                self._local_finished = True
                self._session._finish(self.stream_id)
            await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.close_now()
        await trio.lowlevel.checkpoint()

    def _absorb_negotiation(self, data: bytes) -> bool:
        """Feed late bytes to the pending negotiation; True if they were all its own."""
        dialer = self._pending_negotiation
        assert dialer is not None
        try:
            dialer.receive_data(data)
        except (NegotiationError, RemoteProtocolError):
            self._pending_negotiation = None
            return False
        if dialer.done:
            self._pending_negotiation = None
            return not dialer.leftover
        return True

    def close_now(self) -> None:
        """Close synchronously (FIN if needed; reset if unread data is pending)."""
        if self._closed:
            return
        if self._pending_negotiation is not None and self._buffer:
            pending = b"".join(self._buffer)
            self._buffer.clear()
            self._buffered = 0
            if self._absorb_negotiation(pending):
                pending = b""
            elif self._pending_negotiation is None and pending:
                self._buffer.append(pending)
                self._buffered = len(pending)
        self._closed = True
        self._wake_receiver()
        self._wake_sender()
        if self._reset or self._session._dead is not None:
            return
        if self._buffered and not self._remote_finished:
            self._buffer.clear()
            self._buffered = 0
            self._session._reset(self.stream_id)
            return
        if not self._local_finished:
            self._local_finished = True
            self._session._finish(self.stream_id)

    def reset(self) -> None:
        """Abort the stream in both directions (yamux RST)."""
        if not self._reset and self._session._dead is None:
            self._session._reset(self.stream_id)
        self._reset = True
        self._closed = True
        self._wake_receiver()
        self._wake_sender()
