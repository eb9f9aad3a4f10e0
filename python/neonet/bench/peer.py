"""Benchmark/interop peers with one CLI contract (the same as tests/interop's peers).

    python -m neonet.bench.peer neonet|raw-tcp listen [--transport tcp|ws] [--ip IP]
        prints {"peer_id": ..., "addrs": [...]} and serves until stdin closes
    python -m neonet.bench.peer neonet|raw-tcp dial --addr MADDR [--pings N]
        [--perf-upload N --perf-download M] [--streams N] [--echo-bytes N]
        prints {"ok": true, "connect_ms": ..., "ping_rtt_ms": [...], "perf": {...}, ...}

``raw-tcp`` is the floor: plain trio TCP with no security or multiplexing. It pings with
32-byte round trips, "perf" is upload-then-close, and it has no streams.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial
from typing import Any

import trio

from neonet.core.keys import Ed25519Identity
from neonet.core.multiaddr import Multiaddr

ECHO = "/echo/1.0.0"
CHUNK = 256 * 1024


async def _wait_stdin_closed() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    while await stdin.receive_some(4096):
        pass


def _print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document), flush=True)


# --- NeoNet ---------------------------------------------------------------------------
async def _echo(stream: trio.abc.HalfCloseableStream) -> None:
    while data := await stream.receive_some(CHUNK):
        await stream.send_all(data)
    await stream.send_eof()


async def neonet_listen(args: argparse.Namespace) -> None:
    from neonet.node import open_node

    identity = Ed25519Identity.from_seed(bytes.fromhex(args.seed_hex)) if args.seed_hex else None
    suffix = "/ws" if args.transport == "ws" else ""
    kind = "ip6" if ":" in args.ip else "ip4"
    async with open_node(identity=identity, listen=[f"/{kind}/{args.ip}/tcp/0{suffix}"]) as node:
        node.set_stream_handler(ECHO, _echo)
        _print_json({"peer_id": str(node.peer_id), "addrs": [str(a) for a in node.listen_addrs]})
        await _wait_stdin_closed()


async def neonet_dial(args: argparse.Namespace) -> dict[str, Any]:
    from neonet.node import open_node

    result: dict[str, Any] = {"ok": True}
    async with open_node(listen=()) as node:
        start = trio.current_time()
        peer = await node.connect(args.addr)
        result["connect_ms"] = (trio.current_time() - start) * 1000
        result["remote_peer_id"] = str(peer)
        if args.connects:
            times = []
            for _ in range(args.connects):
                await node.host.disconnect(peer)
                begin = trio.current_time()
                await node.connect(args.addr)
                times.append((trio.current_time() - begin) * 1000)
            result["connect_ms_all"] = times
        if args.pings:
            result["ping_rtt_ms"] = [t * 1000 for t in await node.ping(peer, count=args.pings)]
        if args.perf_upload or args.perf_download:
            perf = await node.perf(
                peer, upload_bytes=args.perf_upload, download_bytes=args.perf_download
            )
            result["perf"] = {
                "upload_bytes": perf.upload_bytes,
                "download_bytes": perf.download_bytes,
                "upload_seconds": perf.upload_seconds,
                "download_seconds": perf.download_seconds,
                "total_seconds": perf.total_seconds,
            }
        if args.streams:
            begin = trio.current_time()
            for _ in range(args.streams):
                stream = await node.new_stream(peer, [ECHO])
                await stream.send_all(b"x")
                if await stream.receive_some(1) != b"x":
                    raise RuntimeError("echo stream returned the wrong byte")
                await stream.aclose()
            result["streams_per_second"] = args.streams / (trio.current_time() - begin)
        if args.echo_bytes:
            payload = os.urandom(args.echo_bytes)
            stream = await node.new_stream(peer, [ECHO])
            received = bytearray()

            async def reader() -> None:
                while chunk := await stream.receive_some(CHUNK):
                    received.extend(chunk)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await stream.send_all(payload)
                await stream.send_eof()
            await stream.aclose()
            result["echo_ok"] = bytes(received) == payload
            result["echo_bytes"] = len(payload)
    return result


# --- raw trio TCP (the floor) -------------------------------------------------------
async def raw_listen(args: argparse.Namespace) -> None:
    async def serve(stream: trio.SocketStream) -> None:
        # First byte: 'p' = ping echo until EOF, 'u' = drain the upload, then close.
        mode = await stream.receive_some(1)
        if mode == b"p":
            while data := await stream.receive_some(CHUNK):
                await stream.send_all(data)
        elif mode == b"u":
            while await stream.receive_some(CHUNK):
                pass
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host=args.ip))
        host, port = listeners[0].socket.getsockname()[:2]
        kind = "ip6" if ":" in host else "ip4"
        _print_json({"peer_id": "", "addrs": [f"/{kind}/{host}/tcp/{port}"]})
        await _wait_stdin_closed()
        nursery.cancel_scope.cancel()


async def raw_dial(args: argparse.Namespace) -> dict[str, Any]:
    address = Multiaddr.from_string(args.addr)
    host, port = (
        address.value_for("ip4") or address.value_for("ip6") or "",
        int(address.value_for("tcp") or 0),
    )
    result: dict[str, Any] = {"ok": True}
    begin = trio.current_time()
    stream = await trio.open_tcp_stream(host, port)
    result["connect_ms"] = (trio.current_time() - begin) * 1000
    times = []
    for _ in range(args.connects):
        begin = trio.current_time()
        extra = await trio.open_tcp_stream(host, port)
        times.append((trio.current_time() - begin) * 1000)
        await extra.aclose()
    result["connect_ms_all"] = times
    await stream.send_all(b"p")
    rtts = []
    payload = os.urandom(32)
    for _ in range(args.pings):
        begin = trio.current_time()
        await stream.send_all(payload)
        got = b""
        while len(got) < 32:
            got += await stream.receive_some(32 - len(got))
        rtts.append((trio.current_time() - begin) * 1000)
    result["ping_rtt_ms"] = rtts
    await stream.aclose()
    if args.perf_upload:
        stream = await trio.open_tcp_stream(host, port)
        block = bytes(CHUNK)
        begin = trio.current_time()
        await stream.send_all(b"u")
        remaining = args.perf_upload
        while remaining:
            step = min(remaining, CHUNK)
            await stream.send_all(block[:step])
            remaining -= step
        await stream.send_eof()
        await stream.receive_some(1)  # the server closes after draining everything
        seconds = trio.current_time() - begin
        result["perf"] = {
            "upload_bytes": args.perf_upload,
            "download_bytes": 0,
            "total_seconds": seconds,
        }
        await stream.aclose()
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m neonet.bench.peer")
    parser.add_argument("implementation", choices=["neonet", "raw-tcp"])
    modes = parser.add_subparsers(dest="mode", required=True)
    listen = modes.add_parser("listen")
    listen.add_argument("--transport", choices=["tcp", "ws"], default="tcp")
    listen.add_argument("--ip", default="127.0.0.1")
    listen.add_argument("--seed-hex")
    dial = modes.add_parser("dial")
    dial.add_argument("--addr", required=True)
    dial.add_argument("--pings", type=int, default=0)
    dial.add_argument(
        "--connects", type=int, default=0, help="extra connects to time after the first"
    )
    dial.add_argument("--perf-upload", type=int, default=0)
    dial.add_argument("--perf-download", type=int, default=0)
    dial.add_argument("--streams", type=int, default=0)
    dial.add_argument("--echo-bytes", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mode == "listen":
        trio.run(neonet_listen if args.implementation == "neonet" else raw_listen, args)
        return 0
    try:
        result = trio.run(neonet_dial if args.implementation == "neonet" else raw_dial, args)
    except Exception as exc:  # a benchmark peer reports any failure as JSON
        _print_json({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
