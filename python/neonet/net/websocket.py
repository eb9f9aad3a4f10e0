"""libp2p's /ws transport: a byte stream carried in binary WebSocket messages (RFC 6455).

libp2p over WebSocket sends its byte stream (multistream-select, Noise, yamux) as a
sequence of binary messages whose boundaries carry no meaning, after an HTTP/1.1 upgrade
on path "/". ``connect_websocket`` and ``accept_websocket`` run that upgrade over a stream
the caller already opened (TCP); both return a ``WebSocketStream``, a plain
``trio.abc.Stream``: WebSocket has no half-close, so there is no ``send_eof``.

wsproto (with h11 underneath) parses and checks the HTTP upgrade. The frame layer is
our own: libp2p needs only binary data, ping/pong and close, and wsproto's frame path
costs several copies of every payload plus a Python-level event per fragment. Owning
the framing also lets bytes that arrive right behind the upgrade be kept, lets a
malformed frame be told apart from the peer's Close (wsproto reports both as
``CloseConnection``), and lets whole payload chunks be returned without re-copying.

Neither handshake has a timeout: the caller wraps it in ``trio.fail_after``. On a failed
handshake the caller still owns, and closes, the transport stream.
"""

from __future__ import annotations

import contextlib
import operator
import os
import re
import struct
from collections.abc import Sequence

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Event, RejectConnection, Request
from wsproto.utilities import LocalProtocolError as WsLocalProtocolError
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

from neonet.core.errors import RemoteProtocolError, TransportError
from neonet.net.conflict import ConflictGuard

__all__ = [
    "CLOSE_TIMEOUT",
    "MAX_HANDSHAKE_BYTES",
    "MAX_MESSAGE_SIZE",
    "MAX_SEND_MESSAGE",
    "WebSocketStream",
    "accept_websocket",
    "connect_websocket",
]

#: Largest HTTP upgrade head (request or response, up to its blank line) we read.
MAX_HANDSHAKE_BYTES = 16 * 1024
#: Largest incoming message (all fragments together). libp2p peers put one Noise
#: message (at most 64 KiB) in each WebSocket message, so this leaves ample room.
MAX_MESSAGE_SIZE = 1024 * 1024
#: Each ``send_all`` goes out as binary messages of at most this many payload bytes.
MAX_SEND_MESSAGE = 256 * 1024
#: How long ``aclose`` may spend sending its Close frame before it just drops TCP.
CLOSE_TIMEOUT = 1.0

# One transport read. Large reads amortise the per-read Python cost over bulk data.
_RECEIVE_SIZE = 256 * 1024
_HANDSHAKE_READ_SIZE = 4096

_OP_CONTINUATION = 0x0
_OP_TEXT = 0x1
_OP_BINARY = 0x2
_OP_CLOSE = 0x8
_OP_PING = 0x9
_OP_PONG = 0xA

_CLOSE_NORMAL = 1000
_CLOSE_PROTOCOL_ERROR = 1002
_CLOSE_UNSUPPORTED_DATA = 1003
_CLOSE_INVALID_PAYLOAD = 1007
_CLOSE_TOO_BIG = 1009

_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")
_CLOSE_CODE = struct.Struct("!H")

# Masking XORs every payload byte with one of four key bytes. Doing it as four strided
# bytes.translate passes keeps the work in C; the int.from_bytes/XOR route measured
# slower on CPython 3.11.
_XOR_TABLES = [bytes(value ^ key for value in range(256)) for key in range(256)]
_ZERO_MASK = b"\x00\x00\x00\x00"

# h11 ends a message head at the first blank line, tolerating bare LF; cut where it does
# so that exactly one head is fed to wsproto and everything after it is ours.
_HEAD_END = re.compile(rb"\n\r?\n")

_REASONS = {400: "Bad Request", 426: "Upgrade Required", 431: "Request Header Fields Too Large"}


def _mask_in_place(buffer: bytearray, start: int, mask: bytes) -> None:
    """XOR ``buffer[start:]`` with the repeating 4-byte ``mask``."""
    if mask == _ZERO_MASK:
        return
    tables = _XOR_TABLES
    buffer[start::4] = buffer[start::4].translate(tables[mask[0]])
    buffer[start + 1 :: 4] = buffer[start + 1 :: 4].translate(tables[mask[1]])
    buffer[start + 2 :: 4] = buffer[start + 2 :: 4].translate(tables[mask[2]])
    buffer[start + 3 :: 4] = buffer[start + 3 :: 4].translate(tables[mask[3]])


def _unmask(
    payload: bytes | bytearray | memoryview, mask: bytes, phase: int
) -> bytes | bytearray | memoryview:
    """Unmask a piece of a frame payload that starts ``phase`` bytes into the mask."""
    if mask == _ZERO_MASK:
        return payload
    if phase:
        mask = mask[phase:] + mask[:phase]
    buffer = bytearray(payload)
    _mask_in_place(buffer, 0, mask)
    return memoryview(buffer)


def _valid_close_code(code: int) -> bool:
    # RFC 6455 7.4 plus the IANA registry: 1004-1006 and 1015 must never be sent, other
    # codes below 3000 are reserved for future RFCs, 3000-4999 belong to applications.
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


class _Violation(Exception):
    """The peer broke a framing rule; ``code`` is the Close status to answer with."""

    def __init__(self, message: str, code: int = _CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


class WebSocketStream(trio.abc.Stream):
    """A byte stream carried in binary WebSocket messages over an underlying trio stream (TCP).

    Build one with ``connect_websocket`` or ``accept_websocket``. ``send_all`` sends its
    bytes as binary messages (at most ``MAX_SEND_MESSAGE`` bytes each); ``receive_some``
    returns the payload bytes of binary messages as they arrive, with no regard for
    message boundaries. Pings are answered automatically. The peer's Close frame is
    answered with ours and reads as end of stream (``b""``); losing TCP without one reads
    as ``trio.BrokenResourceError``. A peer that breaks the framing rules, sends a text
    message or a message over ``max_message_size`` makes ``receive_some`` raise
    ``RemoteProtocolError`` (once, after any payload that preceded the fault), and the
    stream is broken in both directions from then on.
    """

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        *,
        client: bool,
        initial_data: bytes = b"",
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        self.transport_stream = transport_stream
        self.is_client = client
        self.max_message_size = max_message_size
        #: The peer's Close status code and reason once its Close frame has arrived
        #: (1005, "No Status Received" in RFC terms, when the frame carried none).
        self.close_code: int | None = None
        self.close_reason = ""

        self._closed = False  # our aclose() has begun
        self._remote_closed = False  # the peer's Close frame has arrived
        self._close_sent = False
        self._broken: BaseException | None = None  # why the connection can no longer be used
        self._pending_error: RemoteProtocolError | None = None  # raised by the next receive
        self._send_broken: BaseException | None = None  # a send failed: framing may be torn
        self._failure_code = _CLOSE_NORMAL  # status our Close frame will carry

        self._send_guard = ConflictGuard("sending")
        self._receive_guard = ConflictGuard("receiving")
        # Serialises writes to the transport between the sending task and control frames
        # (pongs, the Close reply) produced while receiving.
        self._send_lock = trio.StrictFIFOLock()
        # Control frames waiting for the transport: the answer to the latest ping only (RFC
        # 6455 5.5.3 lets older ones go unanswered, so a ping flood cannot pile pongs up
        # behind a blocked send) and our answering Close.
        self._pong: bytes | bytearray = b""
        self._close_reply: bytes | bytearray = b""

        # Receive state: payload not yet handed out, plus where the frame parser stands.
        self._rx: bytes | bytearray | memoryview = b""
        self._rx_pos = 0
        self._partial = b""  # an incomplete frame header or control frame
        self._frame_left = 0  # payload bytes still to come in the current data frame
        self._frame_mask: bytes | None = None
        self._mask_phase = 0
        self._in_message = False  # a fragmented message awaits its continuation frames
        self._message_size = 0
        if initial_data:
            # A peer may pipeline frames right behind the handshake.
            self._rx = self._parse(initial_data)

    # --- sending ---------------------------------------------------------------------------

    def _frame(self, opcode: int, payload: bytes | bytearray | memoryview) -> bytes | bytearray:
        length = len(payload)
        mask_bit = 0x80 if self.is_client else 0
        if length < 126:
            header = bytes((0x80 | opcode, mask_bit | length))
        elif length < 0x10000:
            header = _HEADER_16.pack(0x80 | opcode, mask_bit | 126, length)
        else:
            header = _HEADER_64.pack(0x80 | opcode, mask_bit | 127, length)
        if not self.is_client:
            return header + payload
        # RFC 6455 5.3: a client masks every frame with a fresh unpredictable key.
        mask = os.urandom(4)
        frame = bytearray(header)
        frame += mask
        start = len(frame)
        frame += payload
        _mask_in_place(frame, start, mask)
        return frame

    def _check_can_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this WebSocket stream was closed")
        if self._send_broken is not None:
            raise trio.BrokenResourceError(
                "an earlier send failed or was cancelled part-way"
            ) from self._send_broken
        if self._broken is not None:
            raise trio.BrokenResourceError("the WebSocket connection is broken") from self._broken
        if self._remote_closed:
            raise trio.BrokenResourceError("the peer closed the WebSocket connection")

    async def _lock_transport(self) -> None:
        # Lock.acquire always yields to the scheduler; uncontended (the usual case) we
        # take the lock directly and leave the checkpoint to the transport call after it.
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()

    async def _transport_send(self, data: bytes | bytearray) -> None:
        """Write to the transport; the caller holds ``_send_lock``."""
        # Cancelled before the first byte leaves, the framing is intact; after that a
        # partial frame may be on the wire and nothing more can follow it.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            await self.transport_stream.send_all(data)
        except trio.ClosedResourceError:
            # Only our own aclose() closes the transport: report it the same way.
            self._send_broken = trio.ClosedResourceError("the WebSocket stream was closed")
            raise
        except BaseException as exc:
            self._send_broken = exc
            raise

    def _take_control(self) -> bytes:
        data = bytes(self._pong) + self._close_reply
        self._pong = self._close_reply = b""
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_guard:
            self._check_can_send()
            with memoryview(data) as raw, raw.cast("B") as view:
                if not view:
                    await trio.lowlevel.checkpoint()
                    return
                await self._lock_transport()
                try:
                    for start in range(0, len(view), MAX_SEND_MESSAGE):
                        self._check_can_send()
                        frame = self._frame(_OP_BINARY, view[start : start + MAX_SEND_MESSAGE])
                        if self._pong or self._close_reply:
                            # Pongs queued by the receiving task ride along between messages.
                            frame = self._take_control() + frame
                        await self._transport_send(frame)
                    if (self._pong or self._close_reply) and self._send_broken is None:
                        await self._transport_send(self._take_control())
                finally:
                    self._send_lock.release()

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_guard:
            if self._closed:
                raise trio.ClosedResourceError("this WebSocket stream was closed")
            await self._lock_transport()
            try:
                await self.transport_stream.wait_send_all_might_not_block()
                if (self._pong or self._close_reply) and self._send_broken is None:
                    await self._transport_send(self._take_control())
            finally:
                self._send_lock.release()

    async def _flush_control(self) -> None:
        """Send queued control frames, unless a sending task holds the transport (then it
        sends them when its current message is out)."""
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            return
        try:
            if self._send_broken is not None or self._closed:
                self._pong = self._close_reply = b""
                return
            # The peer may be gone already (it is allowed to drop TCP right after its
            # Close); the receive side reports what it finds on its own.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._transport_send(self._take_control())
        finally:
            self._send_lock.release()

    # --- receiving -------------------------------------------------------------------------

    def _fail(self, violation: _Violation) -> None:
        error = RemoteProtocolError(
            f"WebSocket protocol violation: {violation}", code=violation.code
        )
        self._pending_error = error
        self._broken = error
        self._failure_code = violation.code

    def _parse(self, data: bytes | bytearray) -> bytes | bytearray | memoryview:
        """Run received bytes through the frame parser; return the payload bytes they held."""
        if self._broken is not None or self._remote_closed:
            return b""
        if self._partial:
            # Only an incomplete header or control frame (< 140 bytes) is ever held back.
            data = self._partial + data
            self._partial = b""
        pieces: list[bytes | bytearray | memoryview] = []
        try:
            self._parse_into(data, pieces)
        except _Violation as violation:
            self._fail(violation)
        if not pieces:
            return b""
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    def _parse_into(
        self, data: bytes | bytearray, pieces: list[bytes | bytearray | memoryview]
    ) -> None:
        view = memoryview(data)
        end = len(data)
        pos = 0
        while pos < end:
            left = self._frame_left
            if left:
                # Inside a data frame: hand its bytes out as they come, whole message or not.
                take = min(left, end - pos)
                piece: bytes | bytearray | memoryview = (
                    data if take == end else view[pos : pos + take]
                )
                mask = self._frame_mask
                if mask is not None:
                    piece = _unmask(piece, mask, self._mask_phase)
                    self._mask_phase = (self._mask_phase + take) & 3
                pieces.append(piece)
                pos += take
                self._frame_left = left - take
                continue

            if end - pos < 2:
                break
            first = data[pos]
            second = data[pos + 1]
            fin = first & 0x80
            opcode = first & 0x0F
            if first & 0x70:
                raise _Violation("reserved bits set without a negotiated extension")
            if opcode >= 8:
                if opcode not in (_OP_CLOSE, _OP_PING, _OP_PONG):
                    raise _Violation(f"unknown control opcode {opcode:#x}")
                if not fin:
                    raise _Violation("fragmented control frame")
            elif opcode == _OP_TEXT:
                raise _Violation("text message on a libp2p connection", _CLOSE_UNSUPPORTED_DATA)
            elif opcode not in (_OP_BINARY, _OP_CONTINUATION):
                raise _Violation(f"unknown data opcode {opcode:#x}")
            masked = second & 0x80
            if masked and self.is_client:
                raise _Violation("masked frame from the server")
            if not masked and not self.is_client:
                raise _Violation("unmasked frame from the client")

            length = second & 0x7F
            header_end = pos + 2
            if length == 126:
                if opcode >= 8:
                    raise _Violation("control frame longer than 125 bytes")
                header_end += 2
                if header_end > end:
                    break
                length = int.from_bytes(data[pos + 2 : header_end], "big")
                if length < 126:
                    raise _Violation("frame length not minimally encoded")
            elif length == 127:
                if opcode >= 8:
                    raise _Violation("control frame longer than 125 bytes")
                header_end += 8
                if header_end > end:
                    break
                length = int.from_bytes(data[pos + 2 : header_end], "big")
                if length < 0x10000 or length >> 63:
                    raise _Violation("frame length not minimally encoded or out of range")
            if masked:
                header_end += 4
                if header_end > end:
                    break
                mask = bytes(data[header_end - 4 : header_end])
            else:
                mask = None

            if opcode >= 8:
                if header_end + length > end:
                    break  # control frames are handled whole
                payload: bytes | bytearray | memoryview = data[header_end : header_end + length]
                if mask is not None:
                    payload = _unmask(payload, mask, 0)
                pos = header_end + length
                self._on_control(opcode, bytes(payload))
                if self._remote_closed:
                    return  # nothing after a Close frame counts
                continue

            if opcode == _OP_BINARY:
                if self._in_message:
                    raise _Violation("new message before the previous one finished")
                self._message_size = 0
            elif not self._in_message:
                raise _Violation("continuation frame outside a message")
            self._in_message = not fin
            self._message_size += length
            if self._message_size > self.max_message_size:
                raise _Violation(
                    f"message larger than {self.max_message_size} bytes", _CLOSE_TOO_BIG
                )
            self._frame_left = length
            self._frame_mask = mask
            self._mask_phase = 0
            pos = header_end
        if pos < end:
            self._partial = bytes(view[pos:])

    def _on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == _OP_PING:
            self._pong = self._frame(_OP_PONG, payload)
        elif opcode == _OP_CLOSE:
            if len(payload) == 1:
                raise _Violation("Close frame with a 1-byte payload")
            if payload:
                (code,) = _CLOSE_CODE.unpack_from(payload)
                if not _valid_close_code(code):
                    raise _Violation(f"Close frame with invalid status code {code}")
                try:
                    reason = payload[2:].decode("utf-8")
                except UnicodeDecodeError:
                    raise _Violation("Close reason is not UTF-8", _CLOSE_INVALID_PAYLOAD) from None
                self.close_code, self.close_reason = code, reason
            else:
                self.close_code = 1005
            self._remote_closed = True
            if not self._close_sent:
                # Answer with our Close, echoing the peer's status as RFC 6455 5.5.1 suggests.
                self._close_sent = True
                self._close_reply = self._frame(_OP_CLOSE, payload[:2])
        # A pong answers a ping we never send: nothing to do.

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be at least 1")
        with self._receive_guard:
            checkpointed = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("this WebSocket stream was closed")
                if self._pong or self._close_reply:
                    await self._flush_control()
                rx = self._rx
                available = len(rx) - self._rx_pos
                if available:
                    if not checkpointed:
                        await trio.lowlevel.checkpoint()
                        if self._closed:
                            raise trio.ClosedResourceError("this WebSocket stream was closed")
                    start = self._rx_pos
                    if max_bytes is None or max_bytes >= available:
                        self._rx = b""
                        self._rx_pos = 0
                        if start == 0 and isinstance(rx, bytes):
                            return rx
                        return bytes(rx[start:])
                    self._rx_pos = start + max_bytes
                    return bytes(rx[start : start + max_bytes])
                if self._pending_error is not None:
                    error, self._pending_error = self._pending_error, None
                    raise error
                if self._remote_closed:
                    if not checkpointed:
                        await trio.lowlevel.checkpoint()
                    return b""
                if self._broken is not None:
                    raise trio.BrokenResourceError(
                        "the WebSocket connection is broken"
                    ) from self._broken
                try:
                    data = await self.transport_stream.receive_some(_RECEIVE_SIZE)
                except trio.BrokenResourceError as exc:
                    self._broken = exc
                    raise
                checkpointed = True
                if not data:
                    self._broken = trio.BrokenResourceError(
                        "the connection ended without a WebSocket Close frame"
                    )
                    continue
                self._rx = self._parse(data)
                self._rx_pos = 0

    # --- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Send a Close frame (best effort, for at most ``CLOSE_TIMEOUT`` seconds) and close
        the transport. Does not wait for the peer's answering Close."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True  # before any checkpoint: a cancelled aclose still closes
        try:
            if self._send_broken is None and not isinstance(self._broken, trio.BrokenResourceError):
                try:
                    # A task blocked mid-send holds the transport: closing it wakes that
                    # task, and there is no frame boundary to put a Close at anyway.
                    self._send_lock.acquire_nowait()
                except trio.WouldBlock:
                    pass
                else:
                    try:
                        # Control frames still queued include any answer to the peer's Close.
                        frame = self._take_control()
                        if not self._close_sent:
                            self._close_sent = True
                            code = _CLOSE_CODE.pack(self._failure_code)
                            frame += self._frame(_OP_CLOSE, code)
                        if frame:
                            with trio.move_on_after(CLOSE_TIMEOUT):
                                await self.transport_stream.send_all(frame)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                    finally:
                        self._send_lock.release()
        finally:
            await self.transport_stream.aclose()


# --- the HTTP upgrade -----------------------------------------------------------------------


class _HandshakeTooLarge(TransportError):
    pass


async def _receive_head(transport_stream: trio.abc.Stream, limit: int) -> tuple[bytes, bytes]:
    """Read one HTTP message head; return it and whatever bytes followed it."""
    buffer = bytearray()
    while True:
        chunk = await transport_stream.receive_some(_HANDSHAKE_READ_SIZE)
        if not chunk:
            raise TransportError("connection closed during the WebSocket handshake")
        search_from = max(0, len(buffer) - 2)
        buffer += chunk
        match = _HEAD_END.search(buffer, search_from)
        if match is not None:
            end = match.end()
            if end > limit:
                break
            return bytes(buffer[:end]), bytes(buffer[end:])
        if len(buffer) >= limit:
            break
    raise _HandshakeTooLarge(f"WebSocket handshake larger than {limit} bytes")


def _http_error(status: int, headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}".encode()]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"Content-Length: 0", b"Connection: close", b"", b""]
    return b"\r\n".join(lines)


async def _refuse(transport_stream: trio.abc.Stream, response: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await transport_stream.send_all(response)


def _header_bytes(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


async def connect_websocket(
    transport_stream: trio.abc.Stream,
    *,
    host: str,
    path: str = "/",
    extra_headers: Sequence[tuple[str | bytes, str | bytes]] = (),
    max_handshake_bytes: int = MAX_HANDSHAKE_BYTES,
    max_message_size: int = MAX_MESSAGE_SIZE,
) -> WebSocketStream:
    """Run the client side of the upgrade over a connected stream the caller opened.

    ``host`` is the Host header ("example.com:4001", "[::1]:4001"). Raises
    ``TransportError`` if the server refuses or answers with anything but a valid 101.
    """
    ws = WSConnection(ConnectionType.CLIENT)
    headers = [(_header_bytes(name), _header_bytes(value)) for name, value in extra_headers]
    await transport_stream.send_all(ws.send(Request(host=host, target=path, extra_headers=headers)))
    head, rest = await _receive_head(transport_stream, max_handshake_bytes)
    try:
        ws.receive_data(head)
        events = list(ws.events())
    except (WsRemoteProtocolError, ValueError) as exc:
        raise TransportError(f"bad WebSocket handshake response: {exc}") from exc
    first = events[0] if events else None
    if isinstance(first, RejectConnection):
        raise TransportError(f"WebSocket upgrade refused with HTTP {first.status_code}")
    if not isinstance(first, AcceptConnection):
        raise TransportError("bad WebSocket handshake response")
    return WebSocketStream(
        transport_stream, client=True, initial_data=rest, max_message_size=max_message_size
    )


async def accept_websocket(
    transport_stream: trio.abc.Stream,
    *,
    max_handshake_bytes: int = MAX_HANDSHAKE_BYTES,
    max_message_size: int = MAX_MESSAGE_SIZE,
) -> WebSocketStream:
    """Run the server side of the upgrade on an accepted stream; any path is accepted.

    A request that is not a valid WebSocket upgrade is answered with 400 (426 for a wrong
    WebSocket version, 431 for a head over ``max_handshake_bytes``) and raises
    ``TransportError``.
    """
    ws = WSConnection(ConnectionType.SERVER)
    try:
        head, rest = await _receive_head(transport_stream, max_handshake_bytes)
    except _HandshakeTooLarge:
        await _refuse(transport_stream, _http_error(431))
        raise
    hint: Event | None = None
    try:
        ws.receive_data(head)
        events = list(ws.events())
    except WsRemoteProtocolError as exc:
        hint, events, problem = exc.event_hint, [], str(exc)
    except ValueError as exc:  # an undecodable Host header, for one
        events, problem = [], str(exc)
    else:
        problem = "not a WebSocket upgrade request"
    if not (events and isinstance(events[0], Request)):
        if isinstance(hint, RejectConnection) and hint.status_code != 400:
            response = _http_error(hint.status_code, hint.headers)
        else:
            response = _http_error(400)
        await _refuse(transport_stream, response)
        raise TransportError(f"refused WebSocket handshake: {problem}")
    try:
        accept = ws.send(AcceptConnection())
    except WsLocalProtocolError as exc:  # pragma: no cover - wsproto accepted the request
        raise TransportError(f"cannot accept WebSocket handshake: {exc}") from exc
    await transport_stream.send_all(accept)
    return WebSocketStream(
        transport_stream, client=False, initial_data=rest, max_message_size=max_message_size
    )
