"""py-libp2p 0.8.1 Kademlia peer for NeoNet's harness (runs in the py-libp2p venv).

    kad_peer.py [--seed-hex HEX] [--mode server|client]

Listens on 127.0.0.1 TCP port 0 with Noise + yamux, runs py-libp2p's own KadDHT and
prints one line ``{"peer_id": ..., "addrs": [...]}``. Then it reads one JSON command
per line on stdin and answers each with one JSON line on stdout:

    {"cmd": "bootstrap", "addrs": [MA, ...]}        -> {"ok": true, "table": N}
    {"cmd": "put", "key": TEXT, "value_hex": HEX}   -> {"ok": true}
    {"cmd": "get", "key": TEXT}                     -> {"ok": true, "value_hex": HEX | null}
    {"cmd": "provide", "key_hex": HEX}              -> {"ok": true}
    {"cmd": "find_providers", "key_hex": HEX}       -> {"ok": true, "providers": [ID, ...]}
    {"cmd": "find_peer", "peer_id": ID}             -> {"ok": true, "addrs": [MA, ...]}
    {"cmd": "table"}                                -> {"ok": true, "peers": [ID, ...]}

Keys of values are text (py-libp2p's API takes ``str``); provider keys are multihash
bytes given in hex. Namespaces ``interop`` and ``neonet-name`` get a validator that
accepts any value (py-libp2p validates ``pk`` and ``ipns`` itself). It exits at EOF.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Any

import libp2p
import libp2p.network.swarm
import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.records.validator import Validator
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

libp2p.network.swarm._HAPPY_EYEBALLS_DELAY = 0
STEP_TIMEOUT = 30.0


class AcceptAny(Validator):
    def validate(self, key: str, value: bytes) -> None:
        return None

    def select(self, key: str, values: list[bytes]) -> int:
        return 0


def make_host(seed_hex: str | None) -> Any:
    key_pair = create_new_key_pair(bytes.fromhex(seed_hex)) if seed_hex else create_new_key_pair()
    sec_opt = {
        NOISE_PROTOCOL_ID: NoiseTransport(
            key_pair, noise_privkey=create_x25519_key_pair().private_key
        )
    }
    return libp2p.new_host(
        key_pair=key_pair,
        sec_opt=sec_opt,
        muxer_opt=libp2p.create_yamux_muxer_option(),
        listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")],
    )


async def handle(dht: KadDHT, host: Any, command: dict[str, Any]) -> dict[str, Any]:
    cmd = command["cmd"]
    if cmd == "bootstrap":
        for text in command["addrs"]:
            info = info_from_p2p_addr(multiaddr.Multiaddr(text))
            await host.connect(info)
            await dht.add_peer(info.peer_id, skip_server_mode_check=True)
        await dht.refresh_routing_table()
        return {"table": dht.get_routing_table_size()}
    if cmd == "put":
        await dht.put_value(command["key"], bytes.fromhex(command["value_hex"]))
        return {}
    if cmd == "get":
        value = await dht.get_value(command["key"])
        return {"value_hex": value.hex() if value is not None else None}
    if cmd == "provide":
        return {"provided": bool(await dht.provide(command["key_hex"]))}
    if cmd == "find_providers":
        infos = await dht.find_providers(command["key_hex"])
        return {"providers": [info.peer_id.pretty() for info in infos]}
    if cmd == "find_peer":
        info = await dht.find_peer(ID.from_base58(command["peer_id"]))
        return {"addrs": [str(a) for a in info.addrs] if info is not None else []}
    if cmd == "table":
        return {"peers": [p.pretty() for p in dht.routing_table.get_peer_ids()]}
    raise ValueError(f"unknown command {cmd!r}")


async def main(args: argparse.Namespace) -> None:
    host = make_host(args.seed_hex)
    mode = DHTMode.SERVER if args.mode == "server" else DHTMode.CLIENT
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        dht = KadDHT(host, mode)
        dht.register_validator("interop", AcceptAny())
        dht.register_validator("neonet-name", AcceptAny())
        async with background_trio_service(dht):
            peer_id = host.get_id().pretty()
            addrs = [
                f"{a}/p2p/{peer_id}" if "/p2p/" not in str(a) else str(a) for a in host.get_addrs()
            ]
            print(json.dumps({"peer_id": peer_id, "addrs": addrs}), flush=True)
            stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
            buffer = b""
            while True:
                chunk = await stdin.receive_some(65536)
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    try:
                        with trio.fail_after(STEP_TIMEOUT):
                            reply = {"ok": True, **await handle(dht, host, json.loads(line))}
                    except Exception as exc:
                        traceback.print_exc(file=sys.stderr)
                        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed-hex")
    parser.add_argument("--mode", choices=["server", "client"], default="server")
    trio.run(main, parser.parse_args())
