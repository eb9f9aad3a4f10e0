"""The trio driver of a yamux connection, and the streams it hands out.

One ``YamuxSession`` owns a byte stream and a sans-I/O yamux engine, both chosen by
``neonet.core.backend`` (Rust or pure Python). Given the Noise channel (``noise=``),
the stream is the raw transport (TCP or WebSocket) and the engine a
``NoiseYamuxConnection``, which decrypts whole socket reads and encrypts its output
in one call each; otherwise the stream is already secured (or a test's memory stream)
and the engine a plain ``YamuxConnection``. A reader task feeds received bytes to the
engine and routes events to streams; a writer task flushes whatever the engine queued.
Only the writer writes to the transport, so a reader never blocks on a full send
buffer (two peers that both write big messages would otherwise deadlock). Over TCP
both tasks use the socket's descriptor directly (the session owns it): the reader waits
for readability before reading after a short read, instead of paying a failed ``recv``
and its exception each time, and the writer hands trio only what the kernel did not
take at once; together about 15% of a small stream's CPU on each side. The writer
exists only while there is output or was some in the last ``WRITER_IDLE_EXIT`` seconds
(1-2 periods), and events are made when someone waits: an idle connection (an SSN holds
thousands) costs one task.

The streams (``YamuxStream``) live in ``neonet.net.yamux_stream`` and are re-exported
here, as is ``LARGE_READ``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from neonet.core import backend
from neonet.core.errors import LimitExceededError, ProtocolError
from neonet.core.noise_transport import NoiseTransportEngine
from neonet.core.yamux import (
    DataReceived,
    GoAwayReceived,
    PongReceived,
    SendWindowIncreased,
    StreamAcknowledged,
    StreamClosed,
    StreamEnded,
    StreamOpened,
    StreamReset,
    YamuxConfig,
    YamuxEngine,
    YamuxEvent,
)
from neonet.net.yamux_stream import LARGE_READ as LARGE_READ
from neonet.net.yamux_stream import YamuxStream as YamuxStream

logger = logging.getLogger("neonet.yamux")

# Read this much from the transport at a time.
RECEIVE_CHUNK = 256 * 1024
# Writers wait while this much engine output is queued and not yet flushed.
MAX_PENDING_OUTPUT = 1024 * 1024
# The writer task ends after this many seconds without output (up to twice that: one
# _IdleWriters task checks them all once per period); the next output starts a new one
# (a few microseconds, against a task's ~4 KB kept for every idle connection).
WRITER_IDLE_EXIT = 1.0

# What a broken connection raises in the session's reader and writer.
_CONNECTION_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError, OSError)


# Scheduler passes the writer waits after a peer opened a stream (see _handle_bytes).
INBOUND_STREAM_DEFER_PASSES = 3


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    open_streams: int
    bytes_sent: int
    bytes_received: int
    writes: int  # transport writes (each is a send syscall or more)
    writer_running: bool = False  # False once the writer ended after idling


_THREAD_STATE = threading.local()


class _IdleWriters:
    """Ends the writers that waited ``WRITER_IDLE_EXIT`` seconds for output (1-2 s, one
    task per trio run for all sessions): each writer only notes when it went idle."""

    def __init__(self) -> None:
        self._since: dict[YamuxSession, float] = {}
        self._parked: trio.lowlevel.Task | None = None

    def add(self, session: YamuxSession) -> None:
        self._since[session] = trio.current_time()
        task = self._parked
        if task is not None:
            self._parked = None
            trio.lowlevel.reschedule(task)

    def remove(self, session: YamuxSession) -> None:
        self._since.pop(session, None)

    async def run(self) -> None:
        while True:
            if not self._since:
                self._parked = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(self._abort)
            await trio.sleep(WRITER_IDLE_EXIT)
            limit = trio.current_time() - WRITER_IDLE_EXIT
            for session, since in list(self._since.items()):
                if since <= limit:
                    del self._since[session]
                    try:
                        session._expire_writer()
                    except Exception:
                        # A system task: an error escaping it would end the whole trio
                        # run (TrioInternalError). One session's trouble stays its own.
                        logger.exception("ending an idle yamux writer failed")

    def _abort(self, raise_cancel: object) -> trio.lowlevel.Abort:
        self._parked = None
        return trio.lowlevel.Abort.SUCCEEDED


_IDLE_WRITERS: trio.lowlevel.RunVar[_IdleWriters] = trio.lowlevel.RunVar("neonet_idle_writers")


def _idle_writers() -> _IdleWriters:
    """This trio run's _IdleWriters, started (as a system task) on first use."""
    try:
        return _IDLE_WRITERS.get()
    except LookupError:
        idle = _IdleWriters()
        _IDLE_WRITERS.set(idle)
        trio.lowlevel.spawn_system_task(idle.run, name="neonet idle writers")
        return idle


def _read_buffer() -> bytearray:
    """This thread's socket read buffer (RECEIVE_CHUNK bytes)."""
    buffer: bytearray | None = getattr(_THREAD_STATE, "read_buffer", None)
    if buffer is None:
        buffer = _THREAD_STATE.read_buffer = bytearray(RECEIVE_CHUNK)
    return buffer


def _socket_fd(transport: trio.abc.Stream) -> int | None:
    """The file descriptor of the TCP socket under ``transport``, if it is one we may
    read and write directly (a ``trio.SocketStream``, or a wrapper with nothing left
    to replay that names one through ``unwrapped()``)."""
    stream: trio.abc.Stream | None = transport
    for _ in range(4):
        if isinstance(stream, trio.SocketStream):
            return stream.socket.fileno()
        unwrapped = getattr(stream, "unwrapped", None)
        if unwrapped is None:
            return None
        stream = unwrapped()
    return None


class YamuxSession:
    """Drives one yamux connection over a byte stream; run it with ``run()`` in a nursery."""

    def __init__(
        self,
        transport: trio.abc.Stream,
        *,
        is_client: bool,
        on_stream: Callable[[YamuxStream], Awaitable[None]],
        config: YamuxConfig | None = None,
        initial_data: bytes = b"",
        remote_peer: object = None,
        noise: NoiseTransportEngine | None = None,
    ) -> None:
        """Drive yamux over ``transport``; ``initial_data`` is plaintext read ahead.

        With ``noise`` (from ``NoiseStream.into_parts``), ``transport`` carries Noise
        ciphertext and the engine takes the channel over.
        """
        self._transport = transport
        self._engine: YamuxEngine
        self._receive_initial: Callable[[bytes | bytearray | memoryview], list[YamuxEvent]]
        if noise is None:
            engine = backend.YamuxConnection(is_client=is_client, config=config)
            self._engine, self._receive_initial = engine, engine.receive_data
        else:
            secured = backend.NoiseYamuxConnection(noise, is_client=is_client, config=config)
            self._engine, self._receive_initial = secured, secured.receive_plaintext
        self._on_stream = on_stream
        self._initial_data = initial_data
        self.remote_peer = remote_peer
        self._streams: dict[int, YamuxStream] = {}
        # The writer task while it waits for output (rescheduled directly: a trio.Event
        # per wait cost more than the wait itself).
        self._writer_task: trio.lowlevel.Task | None = None
        self._writer_expired = False
        self._writer_running = False
        self._defer_passes = 0
        self._writes = 0
        self._output_drained: trio.Event | None = None
        self._pending_output = 0
        self._pings: dict[int, trio.Event] = {}
        self._next_ping = 1
        self._dead: BaseException | None = None
        self._closed_event: trio.Event | None = None
        self._bytes_sent = 0
        self._bytes_received = 0
        self._stream_nursery: trio.Nursery | None = None
        # The stream nursery's scope (no scope of its own: memory per connection).
        self._cancel_scope: trio.CancelScope | None = None
        self._cancel_requested = False
        # Only the Noise engine is fed reads directly from the socket: it is done with
        # the read buffer when it returns (it decrypts into buffers of its own).
        self._socket_fd = _socket_fd(transport) if noise is not None else None

    # --- lifecycle ---------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the reader and writer until the connection ends; stream handlers run inside.

        Transport failures and protocol violations end this connection only: they are
        recorded (streams then raise ``BrokenResourceError``) and ``run`` returns.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._stream_nursery = nursery
                self._cancel_scope = nursery.cancel_scope
                if self._cancel_requested:
                    nursery.cancel_scope.cancel()
                try:
                    task_status.started()
                    if self._initial_data:
                        self._handle_bytes(self._initial_data, self._receive_initial)
                    await self._guarded(self._reader)
                finally:
                    # Closed to new tasks from here (the session is cancelled by now).
                    self._stream_nursery = None
        finally:
            self._mark_dead(trio.BrokenResourceError("connection closed"))
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self._transport.aclose()

    def _cancel(self) -> None:
        """End the session: cancel its reader, writer and stream handlers."""
        self._cancel_requested = True
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    async def _guarded(self, task: Callable[[], Awaitable[None]]) -> None:
        try:
            await task()
        except _CONNECTION_ERRORS as exc:
            self._fail(exc)
        else:
            self._cancel()

    def _fail(self, exc: BaseException) -> None:
        """The connection broke under the reader or writer: record why, end the session."""
        self._mark_dead(exc)
        self._cancel()

    def _mark_dead(self, exc: BaseException) -> None:
        if self._dead is not None:
            return
        self._dead = exc
        for stream in list(self._streams.values()):
            stream._on_reset()
        for waiter in self._pings.values():
            waiter.set()
        self._signal_writer()
        for event in (self._output_drained, self._closed_event):
            if event is not None:
                event.set()

    @property
    def closed(self) -> bool:
        return self._dead is not None

    async def wait_closed(self) -> None:
        if self._dead is not None:
            await trio.lowlevel.checkpoint()
            return
        if self._closed_event is None:
            self._closed_event = trio.Event()
        await self._closed_event.wait()

    async def aclose(self) -> None:
        """Send GoAway (best effort) and tear the connection down."""
        if self._dead is None:
            try:
                self._engine.go_away(0)
                self._wake_writer()
            except ProtocolError:
                pass
        self._mark_dead(trio.ClosedResourceError("connection closed locally"))
        self._cancel()
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await self._transport.aclose()

    def _check_alive(self) -> None:
        if self._dead is not None:
            raise trio.BrokenResourceError("connection closed") from self._dead

    # --- I/O tasks ---------------------------------------------------------------
    async def _reader(self) -> None:
        if self._socket_fd is not None:
            await self._read_socket(self._socket_fd)
            return
        transport = self._transport
        while True:
            data = await transport.receive_some(RECEIVE_CHUNK)
            if not data:
                return
            self._handle_bytes(data)
            del data  # not kept alive while this (often idle) connection waits

    async def _read_socket(self, fd: int) -> None:
        """Read the TCP socket directly (it is ours alone) into one reused buffer; after
        a short read, wait for readability first instead of paying a failed ``recv`` and
        its exception."""
        wait_readable = trio.lowlevel.wait_readable
        checkpoint = trio.lowlevel.checkpoint
        readv = os.readv
        # One buffer for every read of every session in this thread: the engine is done
        # with it when _handle_bytes returns (no await in between). os.read and trio's
        # receive_some allocate max_bytes per call instead, which glibc serves with a
        # fresh mmap at 256 KiB: a fifth of a small stream's CPU.
        buffer = _read_buffer()
        view = memoryview(buffer)
        likely_more = False
        while True:
            if likely_more:
                await checkpoint()
            else:
                await wait_readable(fd)
            try:
                size = readv(fd, (buffer,))
            except BlockingIOError:
                likely_more = False
                continue
            if not size:
                return
            likely_more = size >= LARGE_READ
            self._handle_bytes(view[:size])

    def _handle_bytes(
        self,
        data: bytes | bytearray | memoryview,
        receive: Callable[[bytes | bytearray | memoryview], list[YamuxEvent]] | None = None,
    ) -> None:
        self._bytes_received += len(data)
        had_output = self._engine.has_output
        try:
            events = self._engine.receive_data(data) if receive is None else receive(data)
        except BaseException:
            self._wake_writer()  # the GoAway
            raise
        opened = False
        streams = self._streams
        for event in events:
            match event:
                case DataReceived(stream_id=stream_id, data=data):
                    stream = streams.get(stream_id)
                    if stream is not None:
                        stream._on_data(data)
                    else:
                        self._engine_consume(stream_id, len(data))
                case SendWindowIncreased(stream_id=stream_id):
                    stream = streams.get(stream_id)
                    if stream is not None:
                        stream._on_send_window()
                case StreamOpened(stream_id=stream_id):
                    self._accept(stream_id)
                    opened = True
                case StreamEnded(stream_id=stream_id):
                    stream = streams.get(stream_id)
                    if stream is not None:
                        stream._on_end()
                case StreamReset(stream_id=stream_id):
                    stream = streams.get(stream_id)
                    if stream is not None:
                        stream._on_reset()
                case StreamClosed(stream_id=stream_id):
                    streams.pop(stream_id, None)
                case PongReceived(opaque=opaque):
                    waiter = self._pings.pop(opaque, None)
                    if waiter is not None:
                        waiter.set()
                case StreamAcknowledged() | GoAwayReceived():
                    # Data may flow before the ACK; after GoAway the engine refuses new
                    # outbound streams and existing ones finish normally.
                    pass
        # ACKs, pongs, window updates. A new stream's ACK waits one pass so that it rides
        # on the handler's first frame (the negotiation answer).
        if opened:
            # The handler's task starts next pass, reads the proposal (and the data
            # behind it, a pass later) and answers: ACK, answer and reply share a send.
            self._wake_writer_deferred(INBOUND_STREAM_DEFER_PASSES)
        elif not had_output:
            # Replies to this read (pongs, window updates). Output queued before it
            # (a deferred FIN, say) keeps its deferral.
            self._wake_writer()

    def _accept(self, stream_id: int) -> None:
        stream = YamuxStream(self, stream_id)
        self._streams[stream_id] = stream
        nursery = self._stream_nursery
        if nursery is not None:
            nursery.start_soon(self._on_stream, stream)

    def _start_writer(self) -> None:
        if not self._writer_running and self._stream_nursery is not None and self._dead is None:
            self._writer_running = True
            self._stream_nursery.start_soon(self._writer)

    async def _writer(self) -> None:
        """Flush the engine's output; end after ``WRITER_IDLE_EXIT`` seconds without any."""
        transport = self._transport
        engine = self._engine
        fd = self._socket_fd
        write = os.write
        idle = _idle_writers()
        try:
            while True:
                while self._defer_passes:
                    self._defer_passes -= 1
                    await trio.lowlevel.cancel_shielded_checkpoint()
                data = engine.data_to_send()
                if data:
                    self._bytes_sent += len(data)
                    self._writes += 1
                    if fd is None:
                        await transport.send_all(data)
                        continue
                    # Write the socket directly; only what the kernel did not take goes
                    # through trio (which waits for writability).
                    try:
                        sent = write(fd, data)
                    except BlockingIOError:
                        sent = 0
                    if sent < len(data):
                        await transport.send_all(memoryview(data)[sent:])
                    continue
                self._pending_output = 0
                drained = self._output_drained
                if drained is not None:
                    self._output_drained = None
                    drained.set()
                if self._dead is not None:
                    return
                # Idle: wait for _signal_writer. After WRITER_IDLE_EXIT seconds of this the
                # shared _IdleWriters task ends the wait (no timer of our own: a cancel
                # scope per wait was a tenth of a small stream's CPU).
                idle.add(self)
                self._writer_task = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(self._abort_writer_wait)
                idle.remove(self)
                if self._writer_expired:
                    self._writer_expired = False
                    if not engine.has_output:
                        return  # the next output starts a new writer
        except _CONNECTION_ERRORS as exc:
            self._fail(exc)
        finally:
            self._writer_running = False
            self._writer_task = None
            idle.remove(self)

    def _abort_writer_wait(self, raise_cancel: object) -> trio.lowlevel.Abort:
        self._writer_task = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _expire_writer(self) -> None:
        """End the writer's idle wait (from ``_IdleWriters``)."""
        task = self._writer_task
        if task is not None:
            self._writer_task = None
            self._writer_expired = True
            trio.lowlevel.reschedule(task)

    def _wake_writer(self) -> None:
        """Flush at the writer's next turn, ending any deferral: the output is data a
        task just sent (what the deferred frames were waiting for) or a reply that
        should not wait."""
        # Waking the writer costs a scheduler pass; only do it when there is output.
        if self._engine.has_output:
            self._defer_passes = 0
            self._signal_writer()

    def _signal_writer(self) -> None:
        task = self._writer_task
        if task is not None:
            self._writer_task = None
            trio.lowlevel.reschedule(task)
        elif not self._writer_running:
            self._start_writer()

    def _wake_writer_deferred(self, passes: int = 1) -> None:
        """Wake the writer, which then lets ``passes`` scheduler passes go by before it
        collects the output: for frames that are nearly always followed at once by more
        (a SYN, a negotiation preamble, a FIN before the next SYN), so that they share
        one send (~30 us each on loopback). Data a task sends (``_wake_writer``) ends
        the wait early: it is what the deferred frames were waiting for."""
        if self._engine.has_output:
            self._defer_passes = max(self._defer_passes, passes)
            self._signal_writer()

    async def _output_flushed_enough(self) -> None:
        self._pending_output = self._engine_pending()
        if self._pending_output > MAX_PENDING_OUTPUT:
            if self._output_drained is None:
                self._output_drained = trio.Event()
            await self._output_drained.wait()
            self._check_alive()
        else:
            await trio.lowlevel.checkpoint()

    def _engine_pending(self) -> int:
        return int(self._engine.statistics().bytes_buffered)

    # --- calls from streams ------------------------------------------------------
    def _engine_queue(self, stream_id: int, data: memoryview) -> int:
        return self._engine.send_data(stream_id, data)

    def _engine_send(self, stream_id: int, data: memoryview) -> int:
        sent = self._engine.send_data(stream_id, data)
        if sent:
            self._wake_writer()
        return sent

    def _engine_consume(self, stream_id: int, amount: int) -> None:
        if self._dead is None:
            engine = self._engine
            had_output = engine.has_output
            try:
                engine.consume(stream_id, amount)
            except ProtocolError:
                return
            if not had_output:
                # Only a window update this call queued is urgent: output queued before
                # it (a deferred negotiation answer, say) keeps its deferral.
                self._wake_writer()

    def _send_window(self, stream_id: int) -> int:
        try:
            return self._engine.send_window(stream_id)
        except ProtocolError:
            return 0

    def _finish(self, stream_id: int) -> None:
        try:
            self._engine.close_stream(stream_id)
        except ProtocolError:
            return
        self._forget_if_released(stream_id)
        # A FIN is never urgent; after aclose() the next stream's SYN often follows
        # within two passes (the caller's checkpoint, then open_stream's).
        self._wake_writer_deferred(2)

    def _reset(self, stream_id: int) -> None:
        try:
            self._engine.reset_stream(stream_id)
        except ProtocolError:
            return
        self._forget_if_released(stream_id)
        self._wake_writer()

    def _forget_if_released(self, stream_id: int) -> None:
        if not self._engine.stream_is_open(stream_id):
            self._streams.pop(stream_id, None)

    # --- public API --------------------------------------------------------------
    async def open_stream(self) -> YamuxStream:
        """Open an outbound stream (the SYN goes out now; data may follow before the ACK).

        The SYN waits one scheduler pass, so that a write the caller makes right away
        (a protocol proposal, first data) shares its packet.
        """
        # The checkpoint comes first: a cancelled call opens nothing, and once opened,
        # the SYN waits for the caller's first write in this same pass.
        await trio.lowlevel.checkpoint()
        self._check_alive()
        try:
            stream_id = self._engine.open_stream()
        except LimitExceededError:
            raise
        except ProtocolError as exc:
            raise trio.BrokenResourceError(f"cannot open a stream: {exc}") from exc
        stream = YamuxStream(self, stream_id)
        self._streams[stream_id] = stream
        self._wake_writer_deferred()
        return stream

    async def ping(self) -> float:
        """Round-trip a yamux ping; return seconds."""
        self._check_alive()
        opaque = self._next_ping
        self._next_ping = (self._next_ping + 1) & 0xFFFFFFFF
        event = trio.Event()
        self._pings[opaque] = event
        start = trio.current_time()
        self._engine.ping(opaque)
        self._wake_writer()
        await event.wait()
        self._check_alive()
        return trio.current_time() - start

    def statistics(self) -> SessionStatistics:
        return SessionStatistics(
            open_streams=len(self._streams),
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            writes=self._writes,
            writer_running=self._writer_running,
        )
