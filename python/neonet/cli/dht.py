"""``neonet dht`` and ``neonet name``: the Kademlia DHT and name records from the shell.

neonet dht serve [--listen MADDR ...] [--db FILE] [--bootstrap MADDR ...]
                                             run a DHT server node until Ctrl-C
neonet dht put KEY VALUE | put --blob VALUE  store a value (KEY in a known namespace)
neonet dht get KEY                           look a value up
neonet dht provide KEY                       announce this node as a provider of KEY
neonet dht find-providers KEY                who provides KEY
neonet dht find-peer PEER_ID                 a peer's addresses
neonet name claim NAME [--identity F]        bind NAME to an identity (or renew it)
neonet name resolve NAME                     the peer ID a name points to
neonet name rotate NAME --new-identity F     hand NAME over to another key

Every command but ``serve`` starts a node for the call, joins the DHT through the
``--bootstrap`` addresses (repeatable, or ``$NEONET_BOOTSTRAP``, space-separated),
does its work and stops. ``--db FILE`` keeps the node's identity, stored records and
publications in SQLite across runs (``serve`` defaults to ``$NEONET_HOME/dht.sqlite``);
one-shot commands run in client mode unless ``--server`` is given, and since a
one-shot node does not stay to republish, claims and values live on the servers
until they expire. Provider keys are multihashes in hex; any other text is hashed to
a SHA-256 multihash. Values are text unless ``--hex``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from neonet.cli.main import CliError, default_identity_path, load_identity
from neonet.core.peer_id import PeerId
from neonet.proto.kad_records import blob_key
from neonet.services.kad import KadConfig, KadDHT, open_kad
from neonet.services.kad_store import KadStore

BOOTSTRAP_ENV = "NEONET_BOOTSTRAP"


def _default_db() -> Path:
    base = os.environ.get("NEONET_HOME") or os.path.join(Path.home(), ".neonet")
    return Path(base) / "dht.sqlite"


def provider_key(text: str) -> bytes:
    """A provider key: hex multihash as given, else the SHA-256 multihash of the text."""
    try:
        raw = bytes.fromhex(text)
        if len(raw) >= 2 and raw[1] == len(raw) - 2:
            return raw
    except ValueError:
        pass
    return b"\x12\x20" + hashlib.sha256(text.encode()).digest()


def _emit(args: argparse.Namespace, result: dict[str, Any], text: str) -> None:
    print(json.dumps(result) if args.json else text, flush=True)


@asynccontextmanager
async def _dht(args: argparse.Namespace, *, server: bool) -> AsyncIterator[KadDHT]:
    from neonet.node import open_node

    bootstrap = list(args.bootstrap or os.environ.get(BOOTSTRAP_ENV, "").split())
    db = args.db or (str(_default_db()) if server and args.command_dht == "serve" else None)
    if db is not None:
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    store = KadStore(db or ":memory:")
    try:
        identity = store.load_or_create_identity()
        listen = args.listen or (["/ip4/127.0.0.1/tcp/0"] if server else [])
        config = KadConfig(mode="server" if server else "client")
        async with (
            open_node(identity=identity, listen=listen) as node,
            open_kad(node, config=config, store=store, bootstrap=bootstrap) as dht,
        ):
            if not bootstrap and args.command_dht != "serve":
                raise CliError(
                    f"no bootstrap peers: pass --bootstrap MADDR or set ${BOOTSTRAP_ENV}"
                )
            if bootstrap and not len(dht.table):
                raise CliError("none of the bootstrap peers answered as a DHT server")
            yield dht
    finally:
        store.close()


async def _serve(args: argparse.Namespace) -> None:
    async with _dht(args, server=True) as dht:
        addrs = [str(a) for a in dht.host.listen_addrs]
        _emit(
            args,
            {"peer_id": str(dht.host.peer_id), "addrs": addrs, "routing_table": len(dht.table)},
            f"DHT server {dht.host.peer_id} ({len(dht.table)} peers in its table) on:\n  "
            + "\n  ".join(addrs),
        )
        if not args.exit_after_start:
            await trio.sleep_forever()


async def _dht_command(args: argparse.Namespace) -> None:
    async with _dht(args, server=args.server) as dht:
        with trio.fail_after(args.timeout):
            await _run(args, dht)


def _value_bytes(args: argparse.Namespace, text: str) -> bytes:
    return bytes.fromhex(text) if args.hex else text.encode()


def _show(args: argparse.Namespace, value: bytes) -> str:
    if args.hex:
        return value.hex()
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.hex()


async def _run(args: argparse.Namespace, dht: KadDHT) -> None:
    command = args.command_dht
    if command == "put":
        if args.blob:
            value = _value_bytes(args, args.key)
            key = blob_key(value)
        else:
            if args.value is None:
                raise CliError("put needs KEY VALUE (or --blob VALUE)")
            key, value = args.key.encode(), _value_bytes(args, args.value)
        stored = await dht.put_value(key, value)
        _emit(
            args,
            {"key": key.decode(), "stored": stored},
            f"{key.decode()} stored on {stored} peers",
        )
    elif command == "get":
        result = await dht.search_value(args.key.encode())
        if result.value is None:
            raise CliError(f"no value for {args.key}")
        _emit(
            args,
            {"value": _show(args, result.value), "hops": result.hops},
            _show(args, result.value),
        )
    elif command == "provide":
        key = provider_key(args.key)
        count = await dht.provide(key)
        _emit(
            args,
            {"key": key.hex(), "announced": count},
            f"providing {key.hex()} ({count} peers told)",
        )
    elif command == "find-providers":
        key = provider_key(args.key)
        found = await dht.find_providers(key)
        peers = [str(PeerId(p.peer_id)) for p in found.providers]
        _emit(args, {"key": key.hex(), "providers": peers}, "\n".join(peers) or "no providers")
    elif command == "find-peer":
        found_peer = await dht.find_peer(PeerId.from_string(args.peer))
        addrs = [str(a) for a in found_peer.addrs]
        if not addrs:
            raise CliError(f"{args.peer} was not found")
        _emit(args, {"peer_id": args.peer, "addrs": addrs}, "\n".join(addrs))


async def _name_command(args: argparse.Namespace) -> None:
    from neonet.services import names

    async with _dht(args, server=args.server) as dht:
        with trio.fail_after(args.timeout):
            if args.command_name == "resolve":
                record = await names.resolve_name(dht, args.name)
                if record is None:
                    raise CliError(f"{args.name!r} is not claimed")
                _emit(
                    args,
                    {
                        "name": record.name,
                        "peer_id": str(record.peer_id),
                        "seq": record.seq,
                        "expires": record.expires,
                    },
                    str(record.peer_id),
                )
                return
            identity = load_identity(
                Path(args.identity) if args.identity else default_identity_path()
            )
            try:
                if args.command_name == "claim":
                    record, stored = await names.claim_name(dht, args.name, identity, ttl=args.ttl)
                else:
                    new_identity = load_identity(Path(args.new_identity))
                    record, stored = await names.rotate_name(
                        dht, args.name, identity, new_identity, ttl=args.ttl
                    )
            except (names.NameClaimError, ValueError) as exc:
                raise CliError(str(exc)) from None
            _emit(
                args,
                {
                    "name": record.name,
                    "peer_id": str(record.peer_id),
                    "seq": record.seq,
                    "stored": stored,
                },
                f"{record.name} -> {record.peer_id} (seq {record.seq}, stored on {stored} peers)",
            )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap", action="append", help=f"DHT peer multiaddr (repeatable; or ${BOOTSTRAP_ENV})"
    )
    parser.add_argument("--db", help="SQLite file keeping identity, records and publications")
    parser.add_argument("--listen", action="append", help="multiaddr to listen on (repeatable)")
    parser.add_argument("--server", action="store_true", help="join as a DHT server, not a client")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")


def add_commands(commands: Any) -> None:
    """Register ``dht`` and ``name`` on the ``neonet`` command's subparsers."""
    dht = commands.add_parser("dht", help="Kademlia DHT: values, providers, peers").add_subparsers(
        dest="command_dht", required=True
    )
    serve = dht.add_parser("serve", help="run a DHT server node")
    _common(serve)
    serve.add_argument("--exit-after-start", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(handler=lambda args: trio.run(_serve, args))
    put = dht.add_parser("put", help="store a value under a namespaced key")
    put.add_argument("key", help="e.g. /neonet-blob/<hash> or /pk/...; with --blob, the value")
    put.add_argument("value", nargs="?")
    put.add_argument("--blob", action="store_true", help="store VALUE under its own hash")
    get = dht.add_parser("get", help="look a value up")
    get.add_argument("key")
    provide = dht.add_parser("provide", help="announce this node as a provider of KEY")
    provide.add_argument("key", help="hex multihash, or text to hash")
    providers = dht.add_parser("find-providers", help="find providers of KEY")
    providers.add_argument("key")
    peer = dht.add_parser("find-peer", help="find a peer's addresses")
    peer.add_argument("peer")
    for sub in (put, get, provide, providers, peer):
        _common(sub)
        sub.add_argument("--hex", action="store_true", help="values are hex")
        sub.set_defaults(handler=lambda args: trio.run(_dht_command, args))

    name = commands.add_parser("name", help="NeoNet names: claim, resolve, rotate").add_subparsers(
        dest="command_name", required=True
    )
    claim = name.add_parser("claim", help="bind NAME to an identity (or renew it)")
    resolve = name.add_parser("resolve", help="the peer ID behind NAME")
    rotate = name.add_parser("rotate", help="hand NAME over to another identity's key")
    rotate.add_argument("--new-identity", required=True, help="identity file of the new key")
    for sub in (claim, resolve, rotate):
        sub.add_argument("name")
        _common(sub)
        sub.add_argument(
            "--identity", help=f"identity holding the name (default {default_identity_path()})"
        )
        sub.add_argument(
            "--ttl", type=int, default=7 * 24 * 3600, help="seconds the record stays valid"
        )
        sub.set_defaults(handler=lambda args: trio.run(_name_command, args), command_dht="name")
