"""``neonet ssn``: run a signaling server of the SSN federation and manage its seed list.

neonet ssn init --db FILE [--region R]        make the SSN's identity (prints its peer ID)
neonet ssn serve --db FILE [--seeds FILE --operator PEER_ID] [--region R] [--listen MADDR]...
                 [--no-relay]                 run the SSN (and a circuit relay v2) until Ctrl-C
neonet ssn seeds make --operator-identity F --network N --entry PEER_ID=REGION=MADDR[,MADDR]...
                 [--serial N] [--lifetime SECONDS] --out FILE
                                              the operator signs a seed list
neonet ssn seeds show FILE --operator PEER_ID  check and print a seed list
neonet ssn client --seeds FILE --operator PEER_ID [--name N] [--region R] [--lookup NAME]...
                  [--connect NAME]... [--listen MADDR]... [--stay]
                                              register, look names up, print what was found;
                                              connect (direct, else relay + DCUtR) and say how;
                                              --stay: keep serving, print incoming signals

The SSN keeps its operator data (identity, seed list, operator peer ID, region) in the
SQLite file ``--db`` (WAL, synchronous=FULL): ``serve`` takes ``--seeds``/``--operator``/
``--region`` the first time and reuses the stored values when they are omitted, so a
restarted SSN comes back as the same member with the same configuration.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from neonet.cli.main import CliError, load_identity
from neonet.core.gcpolicy import settle_long_running_process
from neonet.core.peer_id import PeerId
from neonet.proto.ssn.membership import MembershipConfig
from neonet.proto.ssn.seeds import SeedEntry, SeedList, SeedListError, make_seed_list
from neonet.proto.ssn.seeds import verify_seed_list as _verify
from neonet.services.relay import open_relay
from neonet.services.ssn.operator_store import OperatorStore
from neonet.services.ssn.server import SsnConfig, serve_ssn

DEFAULT_SSN_LISTEN = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"]


def load_seeds(data: bytes, operator: str) -> SeedList:
    try:
        return _verify(data, PeerId.from_string(operator), time.time())
    except SeedListError as exc:
        raise CliError(str(exc)) from None


def _emit(args: argparse.Namespace, result: dict[str, Any], text: str) -> None:
    print(json.dumps(result) if args.json else text, flush=True)


def cmd_init(args: argparse.Namespace) -> None:
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    store = OperatorStore(args.db)
    try:
        identity = store.load_or_create_identity()
        if args.region:
            store.set_text("region", args.region)
        peer = PeerId.from_public_key(identity.public_key)
        _emit(args, {"peer_id": str(peer)}, f"SSN identity {peer} in {args.db}")
    finally:
        store.close()


def _operator_data(args: argparse.Namespace, store: OperatorStore) -> tuple[SeedList, str]:
    if args.seeds:
        store.set("seed_list", Path(args.seeds).read_bytes())
    if args.operator:
        store.set_text("operator", args.operator)
    if args.region:
        store.set_text("region", args.region)
    data, operator, region = (
        store.get("seed_list"),
        store.get_text("operator"),
        store.get_text("region"),
    )
    if data is None or operator is None:
        raise CliError("no seed list stored yet: pass --seeds FILE and --operator PEER_ID")
    seeds = load_seeds(data, operator)
    if region is None:
        own = PeerId.from_public_key(store.load_or_create_identity().public_key)
        entry = seeds.entry(own.to_bytes())
        if entry is None:
            raise CliError("no region: pass --region")
        region = entry.region
        store.set_text("region", region)
    return seeds, region


async def _serve(args: argparse.Namespace) -> None:
    from neonet.net.swarm import SwarmConfig
    from neonet.node import open_node

    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    store = OperatorStore(args.db)
    try:
        identity = store.load_or_create_identity()
        seeds, region = _operator_data(args, store)
        operator = store.get_text("operator")
    finally:
        store.close()
    membership = MembershipConfig(
        protocol_period=args.protocol_period, ack_timeout=args.protocol_period * 0.4
    )
    try:
        config = SsnConfig(
            max_clients=args.max_clients,
            client_rate=args.client_rate,
            client_burst=args.client_rate * 2,
            address_rate=args.address_rate,
            address_burst=args.address_burst,
            max_registrations_in_flight=args.max_registrations_in_flight,
            membership=membership,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    swarm = SwarmConfig(max_connections=args.max_clients + 64, max_pending_inbound=1024)
    listen = args.listen or DEFAULT_SSN_LISTEN
    async with (
        open_node(identity=identity, listen=listen, config=swarm) as node,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        if not args.no_relay:
            # Circuit relay v2 (hop) for clients that cannot be dialed directly.
            await stack.enter_async_context(open_relay(node))
        server = await nursery.start(serve_ssn, node.host, seeds, region, config)
        # A long-running server process (the signal path allocates several tracked
        # objects per signal; the sending SSN's CPU per signal fell ~25% with this,
        # docs/benchmarks.md, "Session 5, second pass").
        settle_long_running_process()
        addrs = [str(a) for a in node.listen_addrs]
        _emit(
            args,
            {
                "peer_id": str(node.peer_id),
                "addrs": addrs,
                "region": region,
                "network": seeds.network,
                "serial": seeds.serial,
                "operator": operator,
                "members": len(seeds.entries),
                "relay": not args.no_relay,
            },
            f"SSN {node.peer_id} (region {region}, network {seeds.network} serial"
            f" {seeds.serial}) listening on:\n  " + "\n  ".join(addrs),
        )
        if args.stats_file:
            # Written whole and renamed, so a reader never sees half a file.
            target = Path(args.stats_file)
            while True:
                stats = server.statistics()
                snapshot = {
                    "peer_id": str(node.peer_id),
                    "clients": stats.clients,
                    "registrations": stats.registrations,
                    "lookups": stats.lookups,
                    "signals": stats.signals,
                    "errors": stats.errors,
                    "refused_busy": stats.registrations_refused_busy,
                    "live_members": len(server.live_member_ids()),
                    "records": stats.stored_records,
                }
                await trio.Path(str(target) + ".tmp").write_text(json.dumps(snapshot))
                await trio.Path(str(target) + ".tmp").rename(target)
                await trio.sleep(0.5)
        await trio.sleep_forever()


def _parse_entry(text: str) -> SeedEntry:
    try:
        peer_text, region, addrs = text.split("=", 2)
        return SeedEntry(PeerId.from_string(peer_text).to_bytes(), region, tuple(addrs.split(",")))
    except ValueError as exc:
        raise CliError(f"--entry {text!r}: expected PEER_ID=REGION=MADDR[,MADDR] ({exc})") from None


def cmd_seeds_make(args: argparse.Namespace) -> None:
    operator = load_identity(Path(args.operator_identity))
    try:
        seeds = make_seed_list(
            args.network,
            args.serial,
            [_parse_entry(e) for e in args.entry],
            issued_at=int(time.time()),
            lifetime=args.lifetime,
        )
    except ValueError as exc:
        raise CliError(f"bad seed list: {exc}") from None
    Path(args.out).write_bytes(seeds.sign(operator))
    peer = PeerId.from_public_key(operator.public_key)
    _emit(
        args,
        {"out": args.out, "operator": str(peer), "entries": len(seeds.entries)},
        f"wrote {args.out}: {len(seeds.entries)} SSNs, signed by operator {peer}",
    )


def cmd_seeds_show(args: argparse.Namespace) -> None:
    seeds = load_seeds(Path(args.file).read_bytes(), args.operator)
    entries = [
        {"peer_id": str(e.peer_id), "region": e.region, "addrs": list(e.addrs)}
        for e in seeds.entries
    ]
    text = [f"network {seeds.network} serial {seeds.serial}, expires {seeds.expires_at}"]
    text += [f"  {e['peer_id']}  {e['region']}  {' '.join(e['addrs'])}" for e in entries]
    _emit(
        args,
        {"network": seeds.network, "serial": seeds.serial, "entries": entries},
        "\n".join(text),
    )


async def _client(args: argparse.Namespace, seeds: SeedList) -> None:
    from neonet.node import DEFAULT_LISTEN, open_node
    from neonet.services.ssn.client import open_ssn_client

    identity = load_identity(Path(args.identity)) if args.identity else None
    # --listen addresses are opened by the client once DCUtR runs (hole punching needs
    # them to share their port with outbound connections); without, loopback as before.
    async with (
        open_node(identity=identity, listen=() if args.listen else DEFAULT_LISTEN) as node,
        open_ssn_client(
            node, seeds, name=args.name, region=args.region, listen=args.listen or ()
        ) as client,
    ):
        _emit(
            args,
            {"peer_id": str(node.peer_id), "ssn": str(client.ssn), "name": args.name},
            f"{args.name or node.peer_id} registered with SSN {client.ssn}",
        )
        for query in args.lookup or ():
            with trio.fail_after(args.timeout):
                info = await client.lookup(query)
            _emit(
                args,
                {
                    "query": query,
                    "peer_id": str(info.peer_id),
                    "addrs": [str(a) for a in info.addrs],
                },
                f"{query} -> {info.peer_id} at {', '.join(str(a) for a in info.addrs)}",
            )
        for query in args.connect or ():
            with trio.fail_after(args.timeout):
                connected = await client.connect(query)
            rtt = (await node.ping(connected.peer))[0]
            _emit(
                args,
                {
                    "connect": query,
                    "peer_id": str(connected.peer),
                    "path": connected.path,
                    "dial_errors": list(connected.dial_errors),
                    "ms": round(connected.seconds * 1000, 2),
                    "ping_ms": round(rtt * 1000, 3),
                },
                f"{query}: connected ({connected.path}) in {connected.seconds * 1000:.1f} ms,"
                f" ping {rtt * 1000:.2f} ms"
                + "".join(f"\n  tried first: {error}" for error in connected.dial_errors),
            )
        if args.stay:
            async for signal in client.signals():
                payload = signal.payload.decode(errors="replace")
                _emit(
                    args,
                    {"signal_from": str(signal.sender), "payload": payload},
                    f"signal from {signal.sender}: {payload!r}",
                )


def add_commands(commands: Any) -> None:
    """Register ``ssn`` on the ``neonet`` command's subparsers."""
    ssn = commands.add_parser("ssn", help="Signaling Server Network: serve, seeds").add_subparsers(
        dest="command_ssn", required=True
    )
    init = ssn.add_parser("init", help="create the SSN's identity in its database")
    init.add_argument("--db", required=True)
    init.add_argument("--region")
    init.add_argument("--json", action="store_true")
    init.set_defaults(handler=cmd_init)

    serve = ssn.add_parser("serve", help="run an SSN")
    serve.add_argument("--db", required=True, help="SQLite file of the SSN's operator data")
    serve.add_argument("--seeds", help="signed seed list file (stored in --db)")
    serve.add_argument("--operator", help="operator peer ID that signs the seed list")
    serve.add_argument("--region")
    serve.add_argument("--listen", action="append", help="multiaddr (repeatable; TCP and /ws)")
    serve.add_argument("--max-clients", type=int, default=20_000)
    serve.add_argument("--client-rate", type=float, default=200.0, help="requests/s per client")
    serve.add_argument("--address-rate", type=float, default=50.0, help="registrations/s per IP")
    serve.add_argument("--address-burst", type=float, default=200.0)
    serve.add_argument(
        "--max-registrations-in-flight",
        type=int,
        default=64,
        help="new registrations handled at once; more are refused (OVER_CAPACITY, busy)",
    )
    serve.add_argument("--protocol-period", type=float, default=1.0, help="SWIM period, seconds")
    serve.add_argument("--stats-file", help="keep a JSON snapshot of statistics in this file")
    serve.add_argument("--no-relay", action="store_true", help="do not serve circuit relay v2")
    serve.add_argument("--json", action="store_true")
    serve.set_defaults(handler=lambda args: trio.run(_serve, args))

    seeds = ssn.add_parser("seeds", help="make or check a signed seed list").add_subparsers(
        dest="command_seeds", required=True
    )
    make = seeds.add_parser("make", help="sign a seed list with the operator's identity")
    make.add_argument("--operator-identity", required=True, help="the operator's identity file")
    make.add_argument("--network", required=True)
    make.add_argument("--serial", type=int, default=1)
    make.add_argument("--lifetime", type=int, default=365 * 24 * 3600)
    make.add_argument("--entry", action="append", required=True, help="PEER_ID=REGION=MADDR,...")
    make.add_argument("--out", required=True)
    make.add_argument("--json", action="store_true")
    make.set_defaults(handler=cmd_seeds_make)
    show = seeds.add_parser("show", help="check a seed list's signature and print it")
    show.add_argument("file")
    show.add_argument("--operator", required=True)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_seeds_show)

    client = ssn.add_parser("client", help="register with an SSN and look names up")
    client.add_argument("--seeds", required=True)
    client.add_argument("--operator", required=True)
    client.add_argument("--identity")
    client.add_argument("--name")
    client.add_argument("--region")
    client.add_argument("--lookup", action="append")
    client.add_argument("--connect", action="append", help="connect to NAME, say how")
    client.add_argument("--listen", action="append", help="multiaddr (repeatable)")
    client.add_argument("--stay", action="store_true", help="keep running, print signals")
    client.add_argument("--timeout", type=float, default=30.0)
    client.add_argument("--json", action="store_true")
    client.set_defaults(
        handler=lambda args: trio.run(
            _client, args, load_seeds(Path(args.seeds).read_bytes(), args.operator)
        )
    )
