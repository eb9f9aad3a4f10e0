"""Two NeoNet nodes exchanging GossipSub messages (run inside .venv)."""

import trio

import neonet
from neonet.services.pubsub import PubsubMessage, open_pubsub

TOPIC = "greetings"


async def main() -> None:
    async with (
        neonet.open_node() as alice,
        neonet.open_node() as bob,
        open_pubsub(alice) as alice_pubsub,
        open_pubsub(bob) as bob_pubsub,
    ):
        await alice.connect(bob.listen_addrs[0])

        def no_shouting(message: PubsubMessage) -> bool:  # False rejects (and penalises)
            return not message.data.isupper()

        bob_pubsub.set_validator(TOPIC, no_shouting)
        async with alice_pubsub.subscribe(TOPIC) as inbox, bob_pubsub.subscribe(TOPIC):
            with trio.fail_after(10):  # the mesh forms at the next heartbeat (1 s)
                await bob_pubsub.wait_until(lambda: bool(bob_pubsub.mesh_peers(TOPIC)))
                await bob_pubsub.publish(TOPIC, b"hello, alice")
                message = await inbox.receive()
            print(message.topic, message.data, "from", message.author)


trio.run(main)
