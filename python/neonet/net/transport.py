"""Transports: TCP (IPv4, IPv6, DNS) and WebSocket (/ws) over TCP, addressed by multiaddr.

A transport only moves bytes; security and multiplexing are the upgrader's job.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from neonet.core.errors import TransportError
from neonet.core.multiaddr import Multiaddr
from neonet.net.websocket import accept_websocket, connect_websocket

_HOST_PROTOCOLS = ("ip4", "ip6", "dns", "dns4", "dns6")


@dataclass(frozen=True, slots=True)
class TcpTarget:
    """What a dialable multiaddr says: host, port, whether it is /ws, and the tail (/p2p...)."""

    host: str
    port: int
    websocket: bool
    family: int


def parse_dial_address(address: Multiaddr) -> TcpTarget:
    """Check that NeoNet can dial ``address`` and say how; raise ``TransportError`` if not."""
    names = address.without_peer_id().protocol_names()
    if len(names) < 2 or names[0] not in _HOST_PROTOCOLS or names[1] != "tcp":
        raise TransportError(f"cannot dial {address}: NeoNet dials /ip4|ip6|dns*/…/tcp/… addresses")
    rest = names[2:]
    if rest not in ((), ("ws",)):
        if rest == ("wss",) or rest == ("tls", "ws"):
            raise TransportError(f"cannot dial {address}: /wss is not supported yet")
        raise TransportError(f"cannot dial {address}: unsupported protocols {'/'.join(rest)}")
    host_kind, host = next(iter(address))
    port = int(address.value_for("tcp") or 0)
    family = {
        "ip4": socket.AF_INET,
        "ip6": socket.AF_INET6,
        "dns4": socket.AF_INET,
        "dns6": socket.AF_INET6,
    }
    return TcpTarget(host, port, rest == ("ws",), family.get(host_kind, socket.AF_UNSPEC))


def _socket_multiaddr(sockaddr: tuple[object, ...], family: int, *, websocket: bool) -> Multiaddr:
    host, port = str(sockaddr[0]), int(str(sockaddr[1]))
    kind = "ip6" if family == socket.AF_INET6 else "ip4"
    return Multiaddr.from_string(f"/{kind}/{host}/tcp/{port}" + ("/ws" if websocket else ""))


@dataclass(slots=True)
class RawConnection:
    """A connected byte stream with both ends' addresses."""

    stream: trio.abc.Stream
    local_addr: Multiaddr
    remote_addr: Multiaddr


async def _connect_from_port(target: TcpTarget, local_port: int) -> trio.SocketStream:
    """Connect from ``local_port`` (shared with our listener: SO_REUSEADDR + SO_REUSEPORT).

    Dialing from the listening port makes a NAT map our outbound connections and our
    listener to the same public port, and lets two peers open one TCP connection by
    dialing each other at once (TCP simultaneous open, for DCUtR hole punching).
    """
    sock = trio.socket.socket(target.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind(("::" if target.family == socket.AF_INET6 else "0.0.0.0", local_port))
        await sock.connect((target.host, target.port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def dial(address: Multiaddr, *, local_port: int | None = None) -> RawConnection:
    """Open a TCP (or WebSocket-over-TCP) connection to ``address``.

    With ``local_port`` (an IP address, not a DNS name, is needed then) the connection
    leaves from that port, which our listener shares (see ``Listener(reuse_port=True)``).
    """
    target = parse_dial_address(address)
    try:
        if local_port is not None and target.family != socket.AF_UNSPEC:
            tcp = await _connect_from_port(target, local_port)
        else:
            tcp = await trio.open_tcp_stream(target.host, target.port)
    except OSError as exc:
        raise TransportError(f"cannot connect to {address}: {exc.strerror or exc}") from exc
    sock = tcp.socket
    local = _socket_multiaddr(sock.getsockname(), sock.family, websocket=target.websocket)
    remote = _socket_multiaddr(sock.getpeername(), sock.family, websocket=target.websocket)
    if not target.websocket:
        return RawConnection(tcp, local, remote)
    host_header = (
        f"[{target.host}]:{target.port}" if ":" in target.host else f"{target.host}:{target.port}"
    )
    try:
        stream = await connect_websocket(tcp, host=host_header)
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return RawConnection(stream, local, remote)


def parse_listen_address(address: Multiaddr) -> TcpTarget:
    names = address.protocol_names()
    if (
        len(names) < 2
        or names[0] not in ("ip4", "ip6")
        or names[1] != "tcp"
        or names[2:] not in ((), ("ws",))
    ):
        raise TransportError(f"cannot listen on {address}: use /ip4|ip6/<ip>/tcp/<port>[/ws]")
    host_kind, host = next(iter(address))
    family = socket.AF_INET6 if host_kind == "ip6" else socket.AF_INET
    return TcpTarget(host, int(address.value_for("tcp") or 0), names[2:] == ("ws",), family)


async def _reuse_port_listener(target: TcpTarget) -> trio.SocketListener:
    """A listener whose port outbound connections can share (SO_REUSEPORT)."""
    sock = trio.socket.socket(target.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind((target.host, target.port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


class Listener:
    """Accepts raw connections on one multiaddr and hands each to a callback."""

    def __init__(self, address: Multiaddr, *, reuse_port: bool = False) -> None:
        self.requested = address
        self.reuse_port = reuse_port
        self.target = parse_listen_address(address)
        self._listeners: list[trio.SocketListener] = []
        self.addrs: list[Multiaddr] = []

    async def serve(
        self,
        handle: Callable[[RawConnection], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[list[Multiaddr]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            if self.reuse_port:
                self._listeners = [await _reuse_port_listener(self.target)]
            else:
                self._listeners = await trio.open_tcp_listeners(
                    self.target.port, host=self.target.host
                )
        except OSError as exc:
            raise TransportError(
                f"cannot listen on {self.requested}: {exc.strerror or exc}"
            ) from exc
        self.addrs = [
            _socket_multiaddr(
                listener.socket.getsockname(),
                listener.socket.family,
                websocket=self.target.websocket,
            )
            for listener in self._listeners
        ]

        async def accepted(tcp: trio.SocketStream) -> None:
            sock = tcp.socket
            websocket = self.target.websocket
            local = _socket_multiaddr(sock.getsockname(), sock.family, websocket=websocket)
            remote = _socket_multiaddr(sock.getpeername(), sock.family, websocket=websocket)
            await handle(RawConnection(tcp, local, remote))

        async with trio.open_nursery() as nursery:
            for listener in self._listeners:
                nursery.start_soon(self._accept_loop, listener, accepted, nursery)
            task_status.started(self.addrs)

    async def _accept_loop(
        self,
        listener: trio.SocketListener,
        accepted: Callable[[trio.SocketStream], Awaitable[None]],
        nursery: trio.Nursery,
    ) -> None:
        async with listener:
            while True:
                try:
                    tcp = await listener.accept()
                except OSError as exc:
                    # EMFILE and friends: back off briefly instead of spinning or dying.
                    if exc.errno in (24, 23, 105, 12):
                        await trio.sleep(0.05)
                        continue
                    raise
                nursery.start_soon(accepted, tcp)


async def upgrade_websocket_inbound(raw: RawConnection) -> RawConnection:
    """Run the server side of the WebSocket handshake on an accepted /ws connection."""
    stream = await accept_websocket(raw.stream)
    return RawConnection(stream, raw.local_addr, raw.remote_addr)
