"""NeoBankof over real NeoNet streams on loopback: 4 validator nodes and a client node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trio

from neonet.apps.bank.client import BankClient, CertificationFailed
from neonet.apps.bank.service import ValidatorService
from neonet.apps.bank.store import SqliteVoteStore
from neonet.core.errors import RemoteProtocolError
from neonet.node import Node, open_node
from neonet.proto.bank import wire
from neonet.proto.bank.messages import check_fraud_proof
from neonet.proto.bank.validator import Validator
from neonet.proto.bank.wallet import MemoryWalletStore, Wallet
from tests.apps.bank.test_store import World
from tests.proto.bank.world import identity

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


@asynccontextmanager
async def bank_network(
    world: World, directory: Path
) -> AsyncIterator[tuple[Node, BankClient, list[ValidatorService]]]:
    async with AsyncExitStack() as stack:
        services = []
        peers = []
        client_node = await stack.enter_async_context(open_node(listen=[LOOPBACK]))
        for index, ident in enumerate(world.validator_ids):
            # Even validators use group commit (deferred writes), odd ones commit each write.
            store = SqliteVoteStore(directory / f"validator-{index}.db", deferred=index % 2 == 0)
            # Validators 0 and 1 keep a short tail of each chain in memory and the rest in
            # their store's archive (the ledger archives, not the service); 2 and 3 keep it
            # all in memory and the service stores each applied certificate.
            archive = store if index < 2 else None
            validator = Validator(
                world.committee, index, ident.sign, world.mint_account, store, archive=archive
            )
            validator.ledger.tail = 2
            node = await stack.enter_async_context(open_node(listen=[LOOPBACK]))
            service = ValidatorService(validator, store)
            service.install(node)
            services.append(service)
            peers.append(await client_node.connect(node.listen_addrs[0]))
        yield client_node, BankClient(client_node, world.committee, peers), services


async def certify(client: BankClient, wallet: Wallet, block: bytes) -> None:
    certificate = await client.certify(block, wallet.recent[-1:])
    await client.spread_certificate(certificate)
    wallet.certified(certificate)


async def test_transfer_receive_and_sync_over_streams(tmp_path: Path) -> None:
    world = World()
    bob = world.wallet("bob")
    with trio.fail_after(30):
        async with bank_network(world, tmp_path) as (_, client, services):
            mint = world.mint
            await certify(client, mint, mint.open())
            await certify(client, mint, mint.issue(500))
            await certify(client, bob, bob.open())
            await certify(client, mint, mint.transfer(bob.account, 200))
            transfer = mint.recent[-1].decoded()
            block = bob.receive(mint.account, transfer.sequence, transfer.hash(), 200)
            await certify(client, bob, block)
            for service in services:
                assert service.validator.ledger.balance(bob.account) == 200
                issued, held = service.validator.ledger.conservation()
                assert issued == held == 500
            heads = await client.heads(2)
            assert {(account, sequence) for account, sequence, _, _ in heads} == {
                (mint.account, 2),
                (bob.account, 1),
            }
            chain = await client.sync_chain(2, mint.account, world.mint_account)
            assert [c.block for c in chain] == [c.block for c in mint.history]
            # A second RECEIVE of the same transfer gathers no quorum.
            again = bob.receive(mint.account, transfer.sequence, transfer.hash(), 200)
            with pytest.raises(CertificationFailed, match="already received"):
                await client.certify(again)


async def test_equivocation_over_streams_yields_a_proof(tmp_path: Path) -> None:
    world = World()
    with trio.fail_after(30):
        async with bank_network(world, tmp_path) as (_, client, services):
            mint = world.mint
            await certify(client, mint, mint.open())
            await certify(client, mint, mint.issue(100))
            twin = Wallet(mint.account, mint.key, world.mint_id.sign, MemoryWalletStore())
            twin.synced(list(mint.history))
            a = mint.transfer(identity("x").public_key.data, 100)
            b = twin.transfer(identity("y").public_key.data, 100)
            await certify(client, mint, a)
            with pytest.raises(CertificationFailed) as failure:
                await client.certify(b)
            proof = failure.value.proof
            assert proof is not None
            assert check_fraud_proof(proof, world.committee) == mint.account
            await client.spread_proof(proof)
            for service in services:
                assert mint.account in service.validator.ledger.frozen


async def test_bad_input_is_refused_and_the_service_keeps_running(tmp_path: Path) -> None:
    world = World()
    with trio.fail_after(30):
        async with bank_network(world, tmp_path) as (node, client, services):
            stream = await node.new_stream(client.validators[0], [wire.TRANSFER_PROTOCOL])
            await stream.send_all(b"\x05\xff\xff\xff\xff\xff")  # not CBOR
            data = await stream.receive_some(1000)
            assert b"bad request" in data
            assert await stream.receive_some(1000) == b""  # then closed
            # A synced chain that does not verify is refused.
            mint = world.mint
            await certify(client, mint, mint.open())
            services[1].validator.ledger.accounts[mint.account].certificates[0] = (
                services[1]
                .validator.ledger.accounts[mint.account]
                .certificates[0]
                .__class__(mint.history[0].block, mint.history[0].votes[:2])
            )
            with pytest.raises(RemoteProtocolError, match="quorum"):
                await client.sync_chain(1, mint.account, world.mint_account)
            # The validator still serves.
            assert len(await client.sync_chain(0, mint.account, world.mint_account)) == 1


async def test_batched_votes_and_certificates_are_checked_in_batches(tmp_path: Path) -> None:
    from neonet.apps.bank.client import open_bank_client
    from neonet.proto.bank.messages import Certificate

    world = World()
    with trio.fail_after(30):
        async with bank_network(world, tmp_path) as (node, plain, services):
            # Validator 3 signs its votes with a key that is not its committee key.
            services[3].validator._sign = identity("not-validator-3").sign
            async with open_bank_client(node, world.committee, plain.validators) as client:
                mint = world.mint
                certificate = await client.certify(mint.open())
                assert [vote[0] for vote in certificate.votes] == [0, 1, 2]
                mint.certified(certificate)
                await client.spread_certificate(certificate)
                # Many accounts at once: their SIGN_BATCH answers are checked per batch.
                wallets = [world.wallet(f"batch-{i}") for i in range(8)]
                async with trio.open_nursery() as nursery:
                    for wallet in wallets:
                        nursery.start_soon(certify, client, wallet, wallet.open())
                assert all(wallet.head is not None for wallet in wallets)
                # With a second liar there is no quorum: the bad votes are reported.
                services[2].validator._sign = identity("not-validator-2").sign
                with pytest.raises(CertificationFailed, match="validator 3: bad vote"):
                    await client.certify(mint.issue(5), mint.recent[-1:])
            # A certificate with forged votes riding on a SIGN_BATCH is not applied.
            forged = Certificate(
                mint.pending or b"", ((0, bytes(64)), (1, bytes(64)), (2, bytes(64)))
            )
            other = world.wallet("other")
            request = wire.sign_batch_request([(other.open(), [forged])])
            answer = await plain.ask(0, request, wire.TRANSFER_PROTOCOL)
            assert wire.parse_batch_answer(answer, 1)[0][0][0] == wire.VOTE  # the open is fine
            assert services[0].validator.ledger.balance(mint.account) == 0
            # A block whose signature does not verify is refused inside a SIGN_BATCH too.
            late = world.wallet("late")
            opened = late.open()
            bad = opened[:-1] + bytes([opened[-1] ^ 1])
            request = wire.sign_batch_request([(bad, []), (opened, [])])
            answers, _ = wire.parse_batch_answer(
                await plain.ask(1, request, wire.TRANSFER_PROTOCOL), 2
            )
            assert answers[0][0] == wire.REFUSED and "signature" in str(answers[0][1])
            # Refused before any vote was recorded: the well-signed block still gets one.
            assert answers[1][0] == wire.VOTE
            assert services[0].validator.ledger.head(mint.account).sequence == 0  # type: ignore[union-attr]


async def test_batched_client_catches_up_a_lagging_validator(tmp_path: Path) -> None:
    from neonet.apps.bank.client import open_bank_client
    from neonet.proto.bank.validator import MemoryVoteStore

    world = World()
    with trio.fail_after(30):
        async with bank_network(world, tmp_path) as (node, plain, services):
            async with open_bank_client(node, world.committee, plain.validators) as client:
                mint = world.mint
                await certify(client, mint, mint.open())
                for amount in (5, 6, 7):
                    await certify(client, mint, mint.issue(amount))
                # Validator 0 starts over with nothing; validator 3 votes with a wrong
                # key: the quorum needs validator 0, which must be caught up first.
                ident = world.validator_ids[0]
                services[0].validator = Validator(
                    world.committee, 0, ident.sign, world.mint_account, MemoryVoteStore()
                )
                services[3].validator._sign = identity("not-validator-3").sign
                certificate = await client.certify(mint.issue(8), mint.recent[-16:])
                assert [vote[0] for vote in certificate.votes] == [0, 1, 2]
                assert services[0].validator.ledger.balance(mint.account) == 5 + 6 + 7
