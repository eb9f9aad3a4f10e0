"""The ``neonet`` command: identities, a node, ping, perf and benchmarks.

neonet identity create [--file F] [--encrypt]     make a new Ed25519 identity
neonet identity show [--file F]                   print its peer ID
neonet run [--listen MADDR ...] [--identity F]    run a node, print its addresses
neonet ping MADDR [--count N]                     ping a libp2p peer
neonet perf MADDR [--upload N] [--download N]     /perf/1.0.0 against a peer
neonet bench transport [--quick] [--json] [--both-backends]
                                                  NeoNet vs py-libp2p vs raw TCP
neonet bench core [--quick] [--json]              Rust core vs its pure-Python twins
neonet bench relay [--quick] [--json]             circuit relay v2 and DCUtR on loopback
neonet bench dht [--quick] [--json]               DHT lookup latency and hops, 10/50/200 nodes
neonet bench gossip [--quick] [--json]            50-node GossipSub network, both backends
neonet bench bank [--quick] [--json] [--accounts N] [--points N]
                                                  NeoBankof: certified transfers, POS, sync
neonet bank ...                                   NeoBankof wallets, POS, validators, mint
neonet bench ssn [--quick] [--json]               SSN server vs a Node.js ws room relay
neonet dht ... / neonet name ...                  Kademlia DHT and names (neonet.cli.dht)
neonet ssn ... / neonet demo                      Signaling Server Network (neonet.cli.ssn)
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import json
import logging
import os
import sys
from pathlib import Path

import trio

from neonet._version import __version__
from neonet.core.errors import NeoNetError
from neonet.core.keyfile import (
    PassphraseRequiredError,
    decode_keyfile,
    encode_keyfile,
    is_encrypted,
)
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId

PASSPHRASE_ENV = "NEONET_PASSPHRASE"
DEFAULT_LISTEN = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"]


def default_identity_path() -> Path:
    base = os.environ.get("NEONET_HOME") or os.path.join(Path.home(), ".neonet")
    return Path(base) / "identity.json"


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 1."""


def _passphrase(*, confirm: bool) -> str:
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise CliError(f"a passphrase is needed: set {PASSPHRASE_ENV} or run in a terminal")
    first = getpass.getpass("Passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        raise CliError("the passphrases differ")
    return first


def load_identity(path: Path) -> Ed25519Identity:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"no identity at {path}: create one with `neonet identity create`") from None
    try:
        return decode_keyfile(data, _passphrase(confirm=False) if is_encrypted(data) else None)
    except PassphraseRequiredError as exc:
        raise CliError(str(exc)) from None


def _identity_or_ephemeral(path_text: str | None) -> Ed25519Identity:
    if path_text is None:
        return Ed25519Identity.generate()
    return load_identity(Path(path_text))


def cmd_identity_create(args: argparse.Namespace) -> None:
    path = Path(args.file) if args.file else default_identity_path()
    if path.exists() and not args.force:
        raise CliError(f"{path} exists; pass --force to replace it")
    identity = Ed25519Identity.generate()
    data = encode_keyfile(identity, _passphrase(confirm=True) if args.encrypt else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written with owner-only permissions from the start: it holds a private key.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    print(f"created {path}" + (" (encrypted)" if args.encrypt else ""))
    print(f"peer ID: {PeerId.from_public_key(identity.public_key)}")


def cmd_identity_show(args: argparse.Namespace) -> None:
    path = Path(args.file) if args.file else default_identity_path()
    identity = load_identity(path)
    peer = PeerId.from_public_key(identity.public_key)
    if args.json:
        print(
            json.dumps(
                {
                    "peer_id": str(peer),
                    "cid": peer.to_cid(),
                    "public_key": identity.public_key.to_protobuf().hex(),
                }
            )
        )
        return
    print(f"peer ID:     {peer}")
    print(f"as CIDv1:    {peer.to_cid()}")
    print(f"public key:  {identity.public_key.to_protobuf().hex()} (libp2p protobuf, hex)")


async def _run_node(args: argparse.Namespace) -> None:
    from neonet.node import open_node

    identity = _identity_or_ephemeral(args.identity)
    async with open_node(identity=identity, listen=args.listen or DEFAULT_LISTEN) as node:
        if args.json:
            print(
                json.dumps(
                    {"peer_id": str(node.peer_id), "addrs": [str(a) for a in node.listen_addrs]}
                ),
                flush=True,
            )
        else:
            print(f"NeoNet node {node.peer_id} listening on:")
            for address in node.listen_addrs:
                print(f"  {address}")
            print(
                "Try it from another terminal: neonet ping <address>   (Ctrl-C stops the node)",
                flush=True,
            )
        for target in args.connect or ():
            peer = await node.connect(target)
            print(f"connected to {peer}", flush=True)
        if args.exit_after_start:
            return
        await trio.sleep_forever()


async def _ping(args: argparse.Namespace) -> None:
    from neonet.node import open_node

    async with open_node(identity=_identity_or_ephemeral(args.identity), listen=()) as node:
        with trio.fail_after(args.timeout):
            peer = await node.connect(args.address)
            times = await node.ping(peer, count=args.count)
        for index, seconds in enumerate(times, 1):
            print(f"ping {index} to {peer}: {seconds * 1000:.3f} ms")


async def _perf(args: argparse.Namespace) -> None:
    from neonet.node import open_node

    async with open_node(identity=_identity_or_ephemeral(args.identity), listen=()) as node:
        with trio.fail_after(args.timeout):
            peer = await node.connect(args.address)
            result = await node.perf(peer, upload_bytes=args.upload, download_bytes=args.download)
    up = result.upload_bytes / result.upload_seconds / 1e6 if result.upload_seconds else 0.0
    down = result.download_bytes / result.download_seconds / 1e6 if result.download_seconds else 0.0
    if args.json:
        print(
            json.dumps(
                {
                    "upload_bytes": result.upload_bytes,
                    "download_bytes": result.download_bytes,
                    "upload_mbps": up,
                    "download_mbps": down,
                    "total_seconds": result.total_seconds,
                }
            )
        )
    else:
        print(
            f"upload   {result.upload_bytes} bytes in {result.upload_seconds:.3f} s ({up:.1f} MB/s)"
        )
        print(
            f"download {result.download_bytes} bytes in {result.download_seconds:.3f} s"
            f" ({down:.1f} MB/s)"
        )


#: ``neonet bench <suite>``: the module in ``neonet.bench`` whose ``main`` runs it.
BENCH_SUITES = ("transport", "core", "dht", "gossip", "bank", "ssn", "relay")


def cmd_bench(args: argparse.Namespace) -> None:
    if args.suite not in BENCH_SUITES:
        raise CliError(f"unknown benchmark {args.suite!r}")
    module = importlib.import_module(f"neonet.bench.{args.suite}")
    options: dict[str, object] = {"quick": args.quick, "as_json": args.json}
    if args.suite == "transport":
        options.update(rounds=args.rounds, both_backends=args.both_backends)
    elif args.suite == "ssn":
        options.update(clients=args.clients)
    elif args.suite == "bank":
        if args.accounts is not None and args.accounts < 1:
            raise CliError("--accounts must be at least 1")
        if args.points is not None and not 1 <= args.points <= 100:
            raise CliError("--points must be 1..100")
        options.update(accounts=args.accounts, repeat=args.points)
    module.main(**options)


def _byte_count(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neonet", description="NeoNet: a libp2p-compatible P2P stack."
    )
    parser.add_argument("--version", action="version", version=f"neonet {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    identity = commands.add_parser(
        "identity", help="create or show an identity file"
    ).add_subparsers(dest="identity_command", required=True)
    create = identity.add_parser("create", help="make a new Ed25519 identity")
    create.add_argument("--file", help=f"where to write it (default {default_identity_path()})")
    create.add_argument(
        "--encrypt",
        action="store_true",
        help=f"encrypt with a passphrase (prompted, or ${PASSPHRASE_ENV})",
    )
    create.add_argument("--force", action="store_true", help="replace an existing file")
    create.set_defaults(handler=cmd_identity_create)
    show = identity.add_parser("show", help="print the peer ID of an identity file")
    show.add_argument("--file", help=f"the identity file (default {default_identity_path()})")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_identity_show)

    run = commands.add_parser("run", help="run a node and print its addresses")
    run.add_argument(
        "--listen",
        action="append",
        help=f"multiaddr to listen on (repeatable; default {' '.join(DEFAULT_LISTEN)})",
    )
    run.add_argument("--identity", help="identity file (default: a fresh identity for this run)")
    run.add_argument(
        "--connect", action="append", help="multiaddr to dial once started (repeatable)"
    )
    run.add_argument("--json", action="store_true", help="print the addresses as one JSON line")
    run.add_argument("--exit-after-start", action="store_true", help=argparse.SUPPRESS)
    run.set_defaults(handler=lambda args: trio.run(_run_node, args))

    ping = commands.add_parser("ping", help="ping a peer at a multiaddr (/ipfs/ping/1.0.0)")
    ping.add_argument("address", help="e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo...")
    ping.add_argument("--count", type=int, default=3)
    ping.add_argument("--timeout", type=float, default=30.0)
    ping.add_argument("--identity", help="identity file (default: a fresh identity)")
    ping.set_defaults(handler=lambda args: trio.run(_ping, args))

    perf = commands.add_parser("perf", help="measure throughput to a peer (/perf/1.0.0)")
    perf.add_argument("address")
    perf.add_argument(
        "--upload", type=_byte_count, default=16 * 1024**2, help="bytes to send (e.g. 64MiB)"
    )
    perf.add_argument("--download", type=_byte_count, default=16 * 1024**2, help="bytes to receive")
    perf.add_argument("--timeout", type=float, default=120.0)
    perf.add_argument("--identity", help="identity file (default: a fresh identity)")
    perf.add_argument("--json", action="store_true")
    perf.set_defaults(handler=lambda args: trio.run(_perf, args))

    from neonet.cli.dht import add_commands as add_dht_commands

    add_dht_commands(commands)

    from neonet.cli.ssn import add_commands as add_ssn_commands

    add_ssn_commands(commands)

    from neonet.cli.demo import add_commands as add_demo_commands

    add_demo_commands(commands)

    bench = commands.add_parser("bench", help="benchmarks that print numbers")
    bench.add_argument("suite", choices=BENCH_SUITES)
    bench.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    bench.add_argument("--json", action="store_true")
    bench.add_argument(
        "--rounds", type=int, default=None, help="rounds per measurement (median is reported)"
    )
    bench.add_argument(
        "--both-backends",
        action="store_true",
        help="transport: also run NeoNet on the other backend (native and pure side by side)",
    )
    bench.add_argument(
        "--clients", type=int, default=None, help="ssn: clients one SSN holds (default 4000)"
    )
    bench.add_argument(
        "--accounts",
        type=int,
        default=None,
        help="bank: accounts in flight, one point (default: 32 with --quick, else a sweep)",
    )
    bench.add_argument(
        "--points",
        type=int,
        default=None,
        help="bank: N points of --accounts (default 96), 5 s each, on the same processes",
    )
    bench.set_defaults(handler=cmd_bench)

    from neonet.cli import bank as bank_cli

    bank_cli.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.handler(args)
    except KeyboardInterrupt:
        return 130
    except (CliError, NeoNetError, trio.TooSlowError, OSError) as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, trio.TooSlowError):
            message = "timed out"
        print(f"neonet: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
