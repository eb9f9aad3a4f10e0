"""py-libp2p 0.8.1 GossipSub peer for NeoNet's pubsub interop tests.

Runs inside the py-libp2p virtualenv (never NeoNet's environment). The contract every
pubsub peer follows (tests/interop/README.md, "Pubsub peers"):

    pubsub_peer.py [--ip 127.0.0.1] [--seed-hex HEX]

prints ``{"event": "listening", "peer_id": ..., "addrs": [...]}``, then reads one JSON
command per line on stdin and answers with JSON lines on stdout:

    {"cmd": "connect", "addr": MA}            -> {"event": "connected", "peer_id": ...}
    {"cmd": "subscribe", "topic": T}          -> {"event": "subscribed", "topic": T}
    {"cmd": "publish", "topic": T, "data": HEX} -> {"event": "published", "topic": T}
    {"cmd": "peers", "topic": T}              -> {"event": "peers", "topic": T, "peers": [...]}

Every message received on a subscribed topic is printed as
``{"event": "message", "topic": T, "data": HEX, "from": PEER_ID}``. A failed command
prints ``{"event": "error", "cmd": ..., "error": ...}``. EOF on stdin stops the peer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import libp2p
import libp2p.network.swarm
import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

libp2p.network.swarm._HAPPY_EYEBALLS_DELAY = 0


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def read_lines(receive: trio.MemorySendChannel[str]) -> None:
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with receive:
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    await receive.send(line.decode())


async def pump_subscription(subscription: Any, topic: str) -> None:
    while True:
        message = await subscription.get()
        emit(
            {
                "event": "message",
                "topic": topic,
                "data": message.data.hex(),
                "from": ID(message.from_id).to_base58(),
            }
        )


async def run(args: argparse.Namespace) -> None:
    if args.seed_hex:
        key_pair = create_new_key_pair(bytes.fromhex(args.seed_hex))
    else:
        key_pair = create_new_key_pair()
    sec_opt = {
        NOISE_PROTOCOL_ID: NoiseTransport(
            key_pair, noise_privkey=create_x25519_key_pair().private_key
        )
    }
    listen = multiaddr.Multiaddr(f"/ip4/{args.ip}/tcp/0")
    host = libp2p.new_host(
        key_pair=key_pair,
        sec_opt=sec_opt,
        muxer_opt=libp2p.create_yamux_muxer_option(),
        listen_addrs=[listen],
    )
    # Spec defaults (D=6, heartbeat 1 s); py-libp2p's own defaults are off-spec.
    gossipsub = GossipSub(
        protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        spam_protection_enabled=False,
    )
    pubsub = Pubsub(host, gossipsub)
    subscriptions: dict[str, Any] = {}
    async with host.run(listen_addrs=[listen]), trio.open_nursery() as nursery:
        async with background_trio_service(pubsub), background_trio_service(gossipsub):
            await pubsub.wait_until_ready()
            peer_id = host.get_id().to_base58()
            addrs = [f"{a}" for a in host.get_addrs()]
            addrs = [a if "/p2p/" in a else f"{a}/p2p/{peer_id}" for a in addrs]
            emit({"event": "listening", "peer_id": peer_id, "addrs": addrs})
            send, receive = trio.open_memory_channel[str](100)
            nursery.start_soon(read_lines, send)
            async with receive:
                async for line in receive:
                    try:
                        command = json.loads(line)
                        await handle(command, host, pubsub, subscriptions, nursery)
                    except Exception as exc:  # report and keep serving
                        emit({"event": "error", "cmd": line[:200], "error": repr(exc)})
            nursery.cancel_scope.cancel()


async def handle(
    command: dict[str, Any],
    host: Any,
    pubsub: Pubsub,
    subscriptions: dict[str, Any],
    nursery: trio.Nursery,
) -> None:
    cmd = command["cmd"]
    if cmd == "connect":
        info = info_from_p2p_addr(multiaddr.Multiaddr(command["addr"]))
        with trio.fail_after(20):
            await host.connect(info)
        emit({"event": "connected", "peer_id": info.peer_id.to_base58()})
    elif cmd == "subscribe":
        topic = command["topic"]
        if topic not in subscriptions:
            subscriptions[topic] = await pubsub.subscribe(topic)
            nursery.start_soon(pump_subscription, subscriptions[topic], topic)
        emit({"event": "subscribed", "topic": topic})
    elif cmd == "publish":
        await pubsub.publish(command["topic"], bytes.fromhex(command["data"]))
        emit({"event": "published", "topic": command["topic"]})
    elif cmd == "peers":
        topic = command["topic"]
        peers = sorted(p.to_base58() for p in pubsub.peer_topics.get(topic, set()))
        emit({"event": "peers", "topic": topic, "peers": peers})
    else:
        raise ValueError(f"unknown command {cmd!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--seed-hex")
    args = parser.parse_args()
    trio.run(run, args)
    sys.stdout.flush()
    os._exit(0)  # py-libp2p can leave threads behind


if __name__ == "__main__":
    main()
