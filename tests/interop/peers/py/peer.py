"""py-libp2p 0.8.1 interop peer for NeoNet's harness (see tests/interop/README.md).

Runs inside its own virtualenv (never NeoNet's environment):

    peer.py listen --transport tcp|ws [--ip IP] [--seed-hex HEX]
    peer.py dial --addr MA [--echo-bytes N] [--pings N]
                 [--perf-upload N --perf-download M] [--streams N]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import signal
import sys
import time
from typing import Any

import libp2p
import libp2p.network.swarm
import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.host.ping import PingService
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

# Every successful dial otherwise waits out a fixed 250 ms "happy eyeballs" delay.
libp2p.network.swarm._HAPPY_EYEBALLS_DELAY = 0

ECHO = "/echo/1.0.0"
PERF = "/perf/1.0.0"
PING = "/ipfs/ping/1.0.0"
IDENTIFY = "/ipfs/id/1.0.0"
CHUNK = 64 * 1024
STEP_TIMEOUT = 60.0


class PeerError(Exception):
    pass


def make_host(seed_hex: str | None, listen_addrs: list[multiaddr.Multiaddr]) -> Any:
    if seed_hex is not None:
        try:
            seed = bytes.fromhex(seed_hex)
        except ValueError as exc:
            raise PeerError(f"--seed-hex: {exc}") from exc
        if len(seed) != 32:
            raise PeerError("--seed-hex must be 64 hex digits")
        key_pair = create_new_key_pair(seed)
    else:
        key_pair = create_new_key_pair()
    # Noise only (py-libp2p would also offer TLS, secio and plaintext by default).
    sec_opt = {
        NOISE_PROTOCOL_ID: NoiseTransport(
            key_pair, noise_privkey=create_x25519_key_pair().private_key
        )
    }
    return libp2p.new_host(
        key_pair=key_pair,
        sec_opt=sec_opt,
        muxer_opt=libp2p.create_yamux_muxer_option(),
        listen_addrs=listen_addrs or None,
        enable_tcp=True,
        enable_websocket=True,
    )


async def read_some(stream: Any, n: int = CHUNK) -> bytes:
    """Read up to n bytes; b"" at end of stream (py-libp2p raises StreamEOF)."""
    try:
        data: bytes = await stream.read(n)
    except StreamEOF:
        return b""
    return data


async def read_exactly(stream: Any, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = await read_some(stream, n - len(buf))
        if not data:
            raise PeerError(f"stream ended after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


async def read_to_end(stream: Any) -> bytes:
    buf = bytearray()
    while data := await read_some(stream):
        buf += data
    return bytes(buf)


async def write_zeros(stream: Any, n: int) -> None:
    zeros = bytes(CHUNK)
    while n > 0:
        k = min(n, CHUNK)
        await stream.write(zeros[:k])
        n -= k


# ------------------------------------------------------------------ servers


async def serve_echo(stream: Any) -> None:
    try:
        while data := await read_some(stream):
            await stream.write(data)
        await stream.close_write()
    except Exception as exc:
        print(f"echo: {exc!r}", file=sys.stderr)
        await stream.reset()


async def serve_perf(stream: Any) -> None:
    try:
        hdr = await read_exactly(stream, 8)
        while await read_some(stream):
            pass
        await write_zeros(stream, int.from_bytes(hdr, "big"))
        await stream.close_write()
    except Exception as exc:
        print(f"perf: {exc!r}", file=sys.stderr)
        await stream.reset()


# ------------------------------------------------------------------ listen


async def wait_for_stdin_eof() -> None:
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stream:
        while await stream.receive_some(4096):
            pass


async def listen(args: argparse.Namespace) -> None:
    ip = ipaddress.ip_address(args.ip)
    family = "ip4" if ip.version == 4 else "ip6"
    addr = f"/{family}/{ip}/tcp/0"
    if args.transport == "ws":
        addr += "/ws"
    maddr = multiaddr.Multiaddr(addr)
    host = make_host(args.seed_hex, [maddr])
    host.set_stream_handler(ECHO, serve_echo)
    host.set_stream_handler(PERF, serve_perf)
    # Catch SIGTERM/SIGINT before announcing the address, so a signal sent as soon
    # as the line is read still means a clean exit (status 0).
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with host.run(listen_addrs=[maddr]):
            peer_id = host.get_id().to_string()
            addrs = []
            for a in host.get_addrs():
                text = str(a)
                if "/p2p/" not in text:
                    text += f"/p2p/{peer_id}"
                addrs.append(text)
            if not addrs:
                raise PeerError("no listen address")
            sys.stdout.write(json.dumps({"peer_id": peer_id, "addrs": addrs}) + "\n")
            sys.stdout.flush()
            async with trio.open_nursery() as nursery:

                async def on_signal() -> None:
                    async for _ in signals:
                        break
                    nursery.cancel_scope.cancel()

                async def on_eof() -> None:
                    await wait_for_stdin_eof()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(on_signal)
                nursery.start_soon(on_eof)


# ------------------------------------------------------------------ dial


def pseudo_random(n: int, state: int) -> bytes:
    mask = (1 << 64) - 1
    out = bytearray()
    while len(out) < n:
        state ^= state >> 12
        state ^= (state << 25) & mask
        state ^= state >> 27
        out += ((state * 0x2545F4914F6CDD1D) & mask).to_bytes(8, "little")
    return bytes(out[:n])


def decode_uvarint(buf: bytes) -> tuple[int, int]:
    value = shift = 0
    for i, b in enumerate(buf[:10]):
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i + 1
        shift += 7
    raise PeerError("bad varint")


def ma_text(raw: bytes) -> str:
    try:
        return str(multiaddr.Multiaddr(raw))
    except Exception:
        return "0x" + raw.hex()


async def identify(host: Any, peer: Any) -> dict[str, Any]:
    stream = await host.new_stream(peer, [IDENTIFY])
    raw = await read_to_end(stream)
    await stream.close()
    length, off = decode_uvarint(raw)
    if len(raw) < off + length:
        raise PeerError("identify: truncated message")
    msg = Identify()
    msg.ParseFromString(raw[off : off + length])
    return {
        "protocols": list(msg.protocols),
        "agent_version": msg.agent_version,
        "protocol_version": msg.protocol_version,
        "listen_addrs": [ma_text(a) for a in msg.listen_addrs],
        "observed_addr": ma_text(msg.observed_addr) if msg.observed_addr else "",
    }


async def ping(host: Any, peer: Any, count: int) -> list[float]:
    stream = await host.new_stream(peer, [PING])
    rtts = []
    for _ in range(count):
        payload = secrets.token_bytes(32)
        t0 = time.perf_counter()
        await stream.write(payload)
        pong = await read_exactly(stream, 32)
        rtts.append((time.perf_counter() - t0) * 1000)
        if pong != payload:
            raise PeerError("ping: payload mismatch")
    await stream.close()
    return rtts


async def echo_round(host: Any, peer: Any, data: bytes) -> None:
    stream = await host.new_stream(peer, [ECHO])
    got = bytearray()

    async def writer() -> None:
        for off in range(0, len(data), CHUNK):
            await stream.write(data[off : off + CHUNK])
        await stream.close_write()

    async def reader() -> None:
        got.extend(await read_to_end(stream))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        nursery.start_soon(reader)
    await stream.close()
    if bytes(got) != data:
        raise PeerError(f"echo mismatch: sent {len(data)} bytes, got {len(got)} back")


async def perf(host: Any, peer: Any, up: int, down: int) -> dict[str, Any]:
    stream = await host.new_stream(peer, [PERF])
    t0 = time.perf_counter()
    await stream.write(down.to_bytes(8, "big"))
    await write_zeros(stream, up)
    await stream.close_write()
    up_secs = time.perf_counter() - t0
    t1 = time.perf_counter()
    got = 0
    while data := await read_some(stream):
        got += len(data)
    down_secs = time.perf_counter() - t1
    await stream.close()
    if got != down:
        raise PeerError(f"perf: asked for {down} bytes, got {got}")

    def mbps(n: int, secs: float) -> float:
        return n * 8 / max(secs, 1e-9) / 1e6

    return {
        "upload_bytes": up,
        "download_bytes": got,
        "upload_mbps": mbps(up, up_secs),
        "download_mbps": mbps(got, down_secs),
        # Raw spans for benchmarks: the upload ends when the server's answer (or EOF) comes.
        "upload_seconds": up_secs,
        "download_seconds": down_secs,
    }


async def dial(args: argparse.Namespace) -> dict[str, Any]:
    maddr = multiaddr.Multiaddr(args.addr)
    info = info_from_p2p_addr(maddr)
    host = make_host(args.seed_hex, [])
    report: dict[str, Any] = {}
    async with host.run(listen_addrs=[]):
        t0 = time.perf_counter()
        with trio.fail_after(STEP_TIMEOUT):
            await host.connect(info)
        report["connect_ms"] = (time.perf_counter() - t0) * 1000
        report["remote_peer_id"] = info.peer_id.to_string()
        # host.connect() starts py-libp2p's own identify in the background. Let it
        # finish first: js-libp2p accepts one inbound identify stream at a time per
        # connection and resets a second one.
        with trio.move_on_after(10):
            while info.peer_id in host._identify_inflight:  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.005)
        with trio.fail_after(STEP_TIMEOUT):
            report["identify"] = await identify(host, info.peer_id)
        # py-libp2p's own ping client reports whole milliseconds: run it once as a
        # check, then time the measured pings here on one stream.
        with trio.fail_after(STEP_TIMEOUT):
            await PingService(host).ping(info.peer_id, 1)
        with trio.fail_after(STEP_TIMEOUT):
            report["ping_rtt_ms"] = (
                await ping(host, info.peer_id, args.pings) if args.pings > 0 else []
            )
        if args.echo_bytes is not None:
            data = pseudo_random(args.echo_bytes, 0x9E3779B97F4A7C15 ^ args.echo_bytes)
            with trio.fail_after(STEP_TIMEOUT):
                await echo_round(host, info.peer_id, data)
            report["echo_ok"] = True
            report["echo_bytes"] = args.echo_bytes
        if args.perf_upload is not None or args.perf_download is not None:
            with trio.fail_after(300):
                report["perf"] = await perf(
                    host, info.peer_id, args.perf_upload or 0, args.perf_download or 0
                )
        if args.streams is not None:
            s0 = time.perf_counter()
            for i in range(args.streams):
                with trio.fail_after(STEP_TIMEOUT):
                    await echo_round(host, info.peer_id, bytes([i & 0xFF]))
            elapsed = time.perf_counter() - s0
            report["streams_per_second"] = args.streams / max(elapsed, 1e-9)
        report["ok"] = True
        with trio.move_on_after(2):
            await host.close()
    return report


# ------------------------------------------------------------------ main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="py-peer")
    sub = parser.add_subparsers(dest="mode", required=True)
    lp = sub.add_parser("listen")
    lp.add_argument("--transport", choices=("tcp", "ws"), default="tcp")
    lp.add_argument("--ip", default="127.0.0.1")
    lp.add_argument("--seed-hex")
    dp = sub.add_parser("dial")
    dp.add_argument("--addr", required=True)
    dp.add_argument("--pings", type=int, default=3)
    dp.add_argument("--echo-bytes", type=int)
    dp.add_argument("--perf-upload", type=int)
    dp.add_argument("--perf-download", type=int)
    dp.add_argument("--streams", type=int)
    dp.add_argument("--seed-hex")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args(sys.argv[1:])
    if args.mode == "listen":
        try:
            trio.run(listen, args)
        except Exception as exc:
            print(f"listen failed: {exc!r}", file=sys.stderr)
            return 1
        return 0
    try:
        report = trio.run(dial, args)
        code = 0
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        if isinstance(exc, BaseExceptionGroup):
            leaves: list[BaseException] = []
            todo: list[BaseException] = [exc]
            while todo:
                e = todo.pop()
                if isinstance(e, BaseExceptionGroup):
                    todo.extend(e.exceptions)
                else:
                    leaves.append(e)
            text = "; ".join(f"{type(e).__name__}: {e}" for e in leaves)
        else:
            text = f"{type(exc).__name__}: {exc}"
        report = {"ok": False, "error": text}
        code = 1
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    # py-libp2p can leave background threads behind; do not wait for them.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
