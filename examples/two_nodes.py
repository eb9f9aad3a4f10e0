"""Two NeoNet nodes on loopback: connect, ping, identify and an echo protocol.

Run: python examples/two_nodes.py
"""

import trio

import neonet

ECHO = "/echo/1.0.0"


async def echo(stream: neonet.Stream) -> None:
    # Write back everything until the other side finishes, then finish ours.
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.send_eof()


async def main() -> None:
    async with neonet.open_node() as alice, neonet.open_node() as bob:
        bob.set_stream_handler(ECHO, echo)
        address = bob.listen_addrs[0]  # /ip4/127.0.0.1/tcp/<port>/p2p/<bob's peer ID>
        print("alice", alice.peer_id, "dials", address)

        peer = await alice.connect(address)
        rtt = await alice.ping(peer, count=3)
        print("ping ms:", [round(seconds * 1000, 3) for seconds in rtt])
        info = await alice.identify(peer)
        print("bob runs", info.agent_version, "and speaks", info.protocols)

        stream = await alice.new_stream(peer, [ECHO])
        await stream.send_all(b"hello, bob")
        await stream.send_eof()
        reply = b""
        while chunk := await stream.receive_some():
            reply += chunk
        print("echoed:", reply)


trio.run(main)
