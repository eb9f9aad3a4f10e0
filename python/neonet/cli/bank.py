"""``neonet bank``: the NeoBankof command line (docs/bank.md, "Command line").

neonet bank init DIR                                 a test bank: root, 4 validators, mint
neonet bank validator --bank F --index I             run validator I (keys from init)
neonet bank mint AMOUNT [--to ACCOUNT] --bank F      the mint issues (and pays ACCOUNT)
neonet bank wallet create|balance|history|send|receive|open-purse|pay-offline|refund
neonet bank pos accept TOKEN|receipts|redeem|claim --wallet D    a point of sale (a wallet)

Keys live in encrypted keystores (passphrase from $NEONET_PASSPHRASE or a prompt); wallet,
purse and POS state in SQLite. Every online wallet command first syncs the wallet's own
chain from the committee and resends a pending block, so it never signs twice.
"""

from __future__ import annotations

import argparse
import base64
import functools
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from neonet.apps.bank.client import BankClient, CertificationFailed, open_bank_client
from neonet.apps.bank.fraud_gossip import publish_fraud_proof, serve_fraud_gossip
from neonet.apps.bank.keystore import load_key, save_key
from neonet.apps.bank.service import ValidatorService, settle_validator_process
from neonet.apps.bank.store import SqlitePosStore, SqliteVoteStore, SqliteWalletStore
from neonet.core.errors import DecodeError, NeoNetError
from neonet.core.keys import Ed25519Identity
from neonet.core.ledger import BlockKind, decode_block
from neonet.core.peer_id import PeerId
from neonet.node import Node, open_node
from neonet.proto.bank.messages import (
    Certificate,
    Committee,
    FraudProof,
    PursePayload,
    Receipt,
    ReceivePayload,
    RedeemPayload,
    Spend,
    TransferPayload,
)
from neonet.proto.bank.pos import PaymentRefused, PointOfSale
from neonet.proto.bank.validator import DEFAULT_REFUND_GRACE
from neonet.proto.bank.wallet import PurseWallet, Wallet
from neonet.proto.bank.wire import PurseStatus
from neonet.services.pubsub import open_pubsub

PASSPHRASE_ENV = "NEONET_PASSPHRASE"
PAYMENT_PREFIX = "neonet-bank-payment:"
RECEIPT_PREFIX = "neonet-bank-receipt:"
logger = logging.getLogger("neonet.bank.cli")


class BankCliError(NeoNetError):
    """A user-facing error of ``neonet bank``."""


def _passphrase() -> str:
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise BankCliError(f"a passphrase is needed: set {PASSPHRASE_ENV} or run in a terminal")
    return getpass.getpass("Passphrase: ")


@dataclass(frozen=True)
class BankConfig:
    committee: Committee
    mint_account: bytes
    validators: list[str]  # multiaddrs ending in /p2p/<peer ID>, in committee order
    refund_grace: int = DEFAULT_REFUND_GRACE  # seconds after a purse's expiry

    @classmethod
    def load(cls, path: str) -> BankConfig:
        document = json.loads(Path(path).read_text())
        return cls(
            Committee.decode(bytes.fromhex(document["committee"])),
            bytes.fromhex(document["mint_account"]),
            list(document["validators"]),
            int(document.get("refund_grace", DEFAULT_REFUND_GRACE)),
        )


def _token(prefix: str, data: bytes) -> str:
    return prefix + base64.urlsafe_b64encode(data).decode().rstrip("=")


def _untoken(prefix: str, text: str) -> bytes:
    text = text.strip()
    if not text.startswith(prefix):
        raise BankCliError(f"not a {prefix.rstrip(':')} token")
    body = text[len(prefix) :]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError as exc:
        raise BankCliError(f"bad token: {exc}") from None


# init and validator ------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> None:
    home = Path(args.directory)
    (home / "keys").mkdir(parents=True, exist_ok=True)
    passphrase = _passphrase()
    root = Ed25519Identity.generate()
    validators = [Ed25519Identity.generate() for _ in range(4)]
    for name, ident in [("root", root), *((f"validator-{i}", v) for i, v in enumerate(validators))]:
        save_key(home / "keys" / f"{name}.json", ident, passphrase)
    committee = Committee(0, tuple(v.public_key.data for v in validators)).signed(root.sign)
    mint = Ed25519Identity.generate()
    _create_wallet(home / "mint", mint, passphrase)
    addresses = [
        f"/ip4/127.0.0.1/tcp/{args.base_port + i}/p2p/{PeerId.from_public_key(v.public_key)}"
        for i, v in enumerate(validators)
    ]
    config = {
        "committee": committee.encode().hex(),
        "mint_account": mint.public_key.data.hex(),
        "root_key": root.public_key.data.hex(),
        "validators": addresses,
        "refund_grace": args.refund_grace,
    }
    (home / "bank.json").write_text(json.dumps(config, indent=2) + "\n")
    print(home / "bank.json")


async def _validator(args: argparse.Namespace) -> None:
    config = BankConfig.load(args.bank)
    home = Path(args.bank).parent
    ident = load_key(home / "keys" / f"validator-{args.index}.json", _passphrase())
    if ident.public_key.data != config.committee.validators[args.index]:
        raise BankCliError("this key is not the committee's validator at that index")
    from neonet.proto.bank.validator import Validator

    store = SqliteVoteStore(args.db or home / f"validator-{args.index}.db", deferred=True)
    validator = Validator(
        config.committee,
        args.index,
        ident.sign,
        config.mint_account,
        store,
        refund_grace=config.refund_grace,
        archive=store,  # memory keeps a short tail of each chain; SQLite has them all
    )
    for certificate in store.iter_certificates():
        validator.handle_certificate(certificate)
    for proof in store.proofs():
        validator.handle_fraud_proof(proof)
    listen = config.validators[args.index].rsplit("/p2p/", 1)[0]
    async with (
        open_node(identity=ident, listen=[listen]) as node,
        open_pubsub(node) as pubsub,
        trio.open_nursery() as nursery,
    ):

        def on_proof(proof: FraudProof, account: bytes) -> None:
            if account not in validator.ledger.frozen:
                validator.handle_fraud_proof(proof)
                store.add_proof(proof)  # written with the next group commit

        def found(proof: FraudProof) -> None:
            nursery.start_soon(publish_fraud_proof, pubsub, proof)

        await nursery.start(serve_fraud_gossip, pubsub, config.committee, on_proof)
        ValidatorService(validator, store, on_proof_found=found).install(node)
        settle_validator_process()  # GC and GIL settings of a validator process
        print(f"validator {args.index} on {node.listen_addrs[0]}", flush=True)
        # The other validators are our gossip neighbours for fraud proofs.
        for index, address in enumerate(config.validators):
            if index != args.index:
                nursery.start_soon(_keep_connected, node, address)
        await trio.sleep_forever()


async def _keep_connected(node: Node, address: str) -> None:
    """Dial a fellow validator until it answers (it may start later)."""
    for _ in range(60):
        try:
            await node.connect(address)
            return
        except (NeoNetError, OSError):
            await trio.sleep(1.0)


# wallets -----------------------------------------------------------------------------------


def _create_wallet(directory: Path, ident: Ed25519Identity, passphrase: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "key.json").exists():
        raise BankCliError(f"{directory} already holds a wallet")
    save_key(directory / "key.json", ident, passphrase)
    (directory / "account").write_text(ident.public_key.data.hex() + "\n")
    SqliteWalletStore(directory / "wallet.db").close()


def cmd_wallet_create(args: argparse.Namespace) -> None:
    ident = Ed25519Identity.generate()
    _create_wallet(Path(args.wallet), ident, _passphrase())
    print(ident.public_key.data.hex())


def _open_wallet(
    directory: Path, *, need_key: bool = True
) -> tuple[Wallet, Ed25519Identity | None]:
    if not (directory / "account").exists():
        raise BankCliError(f"no wallet in {directory}: run `neonet bank wallet create`")
    account = bytes.fromhex((directory / "account").read_text().strip())
    ident = load_key(directory / "key.json", _passphrase()) if need_key else None
    key = account if ident is None else ident.public_key.data
    sign = ident.sign if ident is not None else _no_signing
    return Wallet(account, key, sign, SqliteWalletStore(directory / "wallet.db")), ident


def _no_signing(_: bytes) -> bytes:
    raise BankCliError("this command does not sign")


@asynccontextmanager
async def _online(config: BankConfig) -> AsyncIterator[BankClient]:
    async with open_node(listen=()) as node:
        peers = []
        for address in config.validators:
            peers.append(await node.connect(address))
        async with open_bank_client(node, config.committee, peers) as client:
            yield client


async def _sync(client: BankClient, wallet: Wallet, config: BankConfig) -> None:
    """Learn the wallet's certified chain, then get a pending block certified."""
    last: Exception | None = None
    for index in range(len(config.validators)):
        try:
            chain = await client.sync_chain(index, wallet.account, config.mint_account, wallet.head)
            break
        except (NeoNetError, OSError, trio.TooSlowError) as exc:
            last = exc
    else:
        raise BankCliError(f"no validator could sync the chain: {last}")
    wallet.synced(chain)
    if wallet.pending is not None:
        try:
            await _commit(client, wallet, wallet.pending)
        except CertificationFailed:
            if decode_block(wallet.pending).kind != BlockKind.REDEEM:
                raise
            # A REDEEM whose slot another spend won stays pending until `pos claim`
            # replaces it by the CLAIM of the same spend.
            logger.info("the pending REDEEM is refused; `neonet bank pos claim` settles it")


async def _commit(
    client: BankClient, wallet: Wallet, block: bytes, depends: list[Certificate] | None = None
) -> Certificate:
    try:
        certificate = await client.certify(block, wallet.recent, depends or ())
    except CertificationFailed as failure:
        if failure.proof is not None:
            await client.spread_proof(failure.proof)
        raise
    wallet.certified(certificate)
    await client.spread_certificate(certificate)
    return certificate


def _run_online(args: argparse.Namespace, action: object) -> None:
    async def main() -> None:
        config = BankConfig.load(args.bank)
        wallet, _ = _open_wallet(Path(args.wallet))
        async with _online(config) as client:
            await _sync(client, wallet, config)
            await action(client, wallet, config, args)  # type: ignore[operator]

    try:
        trio.run(_with_timeout, main, args.timeout)
    except BaseExceptionGroup as group:
        # The node's and client's nurseries wrap our error: report the first one.
        errors = group.subgroup((NeoNetError, OSError, trio.TooSlowError))
        if errors is None:
            raise
        first: BaseException = errors
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise BankCliError(str(first) or type(first).__name__) from group


async def _with_timeout(function: object, seconds: float) -> None:
    with trio.fail_after(seconds):
        await function()  # type: ignore[operator]


async def _balance(
    client: BankClient, wallet: Wallet, config: BankConfig, args: argparse.Namespace
) -> None:
    incoming = await client.incoming(0, wallet.account)
    pending = sum(c.decoded().amount for c in incoming)
    print(
        json.dumps(
            {"account": wallet.account.hex(), "balance": wallet.balance, "incoming": pending}
        )
    )


HISTORY_PAGE = 256  # certificates `wallet history` reads from the store at a time


def print_history(wallet: Wallet, page: int = HISTORY_PAGE) -> None:
    """Print the wallet's certified chain, one JSON line per block, reading the store a
    page at a time: a long chain is never all in memory (the wallet keeps a tail)."""
    sequence = 0
    while sequence < wallet.length:
        certificates = wallet.store.chain(sequence, min(page, wallet.length - sequence))
        blocks = [certificate.decoded() for certificate in certificates]
        if not blocks:
            raise BankCliError(f"the wallet store has no certificate at sequence {sequence}")
        for block in blocks:
            if block.sequence != sequence:
                raise BankCliError(f"the wallet store has no certificate at sequence {sequence}")
            entry: dict[str, object] = {
                "sequence": block.sequence,
                "kind": block.kind,
                "amount": block.amount,
                "balance": block.balance,
            }
            if block.kind == 2:
                entry["to"] = TransferPayload.decode(block.payload).payee.hex()
            if block.kind == 3:
                entry["from"] = ReceivePayload.decode(block.payload).payer.hex()
            print(json.dumps(entry))
            sequence += 1


async def _history(
    client: BankClient, wallet: Wallet, config: BankConfig, args: argparse.Namespace
) -> None:
    print_history(wallet)


async def _send(
    client: BankClient, wallet: Wallet, config: BankConfig, args: argparse.Namespace
) -> None:
    payee = bytes.fromhex(args.account)
    certificate = await _commit(
        client, wallet, wallet.transfer(payee, args.amount, args.memo.encode())
    )
    print(
        json.dumps(
            {"sent": args.amount, "to": args.account, "sequence": certificate.decoded().sequence}
        )
    )


async def _receive(
    client: BankClient, wallet: Wallet, config: BankConfig, args: argparse.Namespace
) -> None:
    total = 0
    if wallet.head is None:
        await _commit(client, wallet, wallet.open())
    for transfer_certificate in await client.incoming(0, wallet.account):
        transfer = transfer_certificate.decoded()
        block = wallet.receive(
            transfer.account, transfer.sequence, transfer.hash(), transfer.amount
        )
        await _commit(client, wallet, block, [transfer_certificate])
        total += transfer.amount
    print(json.dumps({"received": total, "balance": wallet.balance}))


async def _open_purse(
    client: BankClient, wallet: Wallet, config: BankConfig, args: argparse.Namespace
) -> None:
    purse_key = Ed25519Identity.generate()
    expiry = int(time.time()) + args.expires_in
    terms = PursePayload(purse_key.public_key.data, args.cap, args.count, expiry)
    certificate = await _commit(client, wallet, wallet.open_purse(args.cap * args.count, terms))
    purse_id = certificate.decoded().hash()
    SqliteWalletStore(Path(args.wallet) / "wallet.db").save_purse(
        purse_id, certificate, purse_key.seed()
    )
    print(json.dumps({"purse": purse_id.hex(), "amount": args.cap * args.count, "expiry": expiry}))


async def _mint(
    client: BankClient, wallet: Wallet, config: BankConfig, args: argparse.Namespace
) -> None:
    if wallet.account != config.mint_account:
        raise BankCliError("this wallet is not the bank's mint")
    if wallet.head is None:
        await _commit(client, wallet, wallet.open())
    await _commit(client, wallet, wallet.issue(args.amount))
    if args.to:
        await _commit(client, wallet, wallet.transfer(bytes.fromhex(args.to), args.amount))
    print(json.dumps({"issued": args.amount, "to": args.to or wallet.account.hex()}))


async def _open_account(
    client: BankClient, wallet: Wallet, config: BankConfig, args: argparse.Namespace
) -> None:
    if wallet.head is None:
        await _commit(client, wallet, wallet.open())
    print(
        json.dumps(
            {
                "account": wallet.account.hex(),
                "sequence": wallet.head.sequence if wallet.head else None,
            }
        )
    )


def cmd_pay_offline(args: argparse.Namespace) -> None:
    """Offline: sign a spend from a purse; print the token for the POS (any channel)."""
    store = SqliteWalletStore(Path(args.wallet) / "wallet.db")
    now = int(time.time())
    for certificate, next_index, seed in store.purses():
        purse_id = certificate.decoded().hash()
        if args.purse and not purse_id.hex().startswith(args.purse):
            continue
        terms = PursePayload.decode(certificate.decoded().payload)
        if next_index >= terms.count or now >= terms.expiry or args.amount > terms.cap:
            continue
        purse = PurseWallet(
            certificate,
            Ed25519Identity.from_seed(seed).sign,
            next_index,
            persist_index=functools.partial(store.set_purse_index, purse_id),
        )
        payment = purse.pay(bytes.fromhex(args.payee), args.amount, now)
        print(_token(PAYMENT_PREFIX, payment.encode()))
        return
    raise BankCliError("no purse can pay this (cap, count or expiry)")


# point of sale -------------------------------------------------------------------------------


def _pos(args: argparse.Namespace) -> tuple[PointOfSale, SqlitePosStore]:
    config = BankConfig.load(args.bank)
    wallet, ident = _open_wallet(Path(args.wallet))
    assert ident is not None
    store = SqlitePosStore(Path(args.wallet) / "pos.db")
    return PointOfSale(config.committee, wallet.account, ident.sign, store), store


def cmd_pos_accept(args: argparse.Namespace) -> None:
    """Offline: check a payment token and print a receipt token."""
    pos, _ = _pos(args)
    token = args.token if args.token != "-" else sys.stdin.read()
    result = pos.accept(_untoken(PAYMENT_PREFIX, token), int(time.time()))
    if isinstance(result, PaymentRefused):
        raise BankCliError(f"payment refused: {result.reason}")
    print(_token(RECEIPT_PREFIX, result.encode()))


def cmd_pos_receipts(args: argparse.Namespace) -> None:
    _, store = _pos(args)
    for payment, receipt, redeemed in store.receipts():
        print(
            json.dumps(
                {
                    "purse": payment.spend.purse_id.hex(),
                    "index": payment.spend.index,
                    "amount": payment.spend.amount,
                    "accepted_at": receipt.accepted_at,
                    "redeemed": redeemed,
                }
            )
        )


async def _redeem(
    client: BankClient, wallet: Wallet, config: BankConfig, args: argparse.Namespace
) -> None:
    store = SqlitePosStore(Path(args.wallet) / "pos.db")
    total = 0
    for payment, _, redeemed in store.receipts():
        if redeemed:
            continue
        if wallet.head is None:
            await _commit(client, wallet, wallet.open())
        spend = payment.spend
        winner = _winner(await client.purse_statuses(spend.purse_id, spend.index), spend)
        if winner is not None:
            # Another spend won the slot: prove the double spend (the payer is frozen)
            # and keep this payment for `pos claim`.
            proof = FraudProof.of_spends(spend, winner, payment.purse)
            await client.spread_proof(proof)
            print(json.dumps({"lost": spend.index, "proof": True}))
            continue
        try:
            await _commit(client, wallet, wallet.redeem(spend), [payment.purse])
        except CertificationFailed as failure:
            # The slot went to another spend (a double spend: the proof freezes the payer).
            # The REDEEM stays pending until `pos claim` replaces it by a CLAIM.
            print(json.dumps({"refused": str(failure), "proof": failure.proof is not None}))
            break
        store.mark_redeemed(payment.spend.purse_id, payment.spend.index)
        total += payment.spend.amount
    print(json.dumps({"redeemed": total, "balance": wallet.balance}))


def _winner(statuses: list[PurseStatus | None], spend: Spend) -> Spend | None:
    """The other spend that validators say won ``spend``'s slot, if any."""
    for status in statuses:
        if status is not None and status.redeemed not in (None, spend):
            return status.redeemed
    return None


async def _claim(
    client: BankClient, wallet: Wallet, config: BankConfig, args: argparse.Namespace
) -> None:
    """Claim every accepted spend whose slot another spend won, from the payer's frozen
    funds (replacing this POS's lost REDEEM, if it is the pending block)."""
    store = SqlitePosStore(Path(args.wallet) / "pos.db")
    total = 0
    for payment, _, settled in store.receipts():
        spend = payment.spend
        if settled:
            continue
        statuses = await client.purse_statuses(spend.purse_id, spend.index)
        known = [s for s in statuses if s is not None]
        if len(known) < config.committee.quorum or _winner(statuses, spend) is None:
            continue
        # Judged where every answering validator is; the lowest figure of what may be
        # claimed; the next claim index (validators behind it catch up from the spread).
        frozen_sequence = min(s.owner_sequence for s in known)
        amount = min(spend.amount, *(s.claimable for s in known))
        claim_index = max(s.next_claim_index for s in known)
        if amount == 0:
            print(json.dumps({"unpaid": spend.index, "reason": "no frozen funds left"}))
            continue
        pending = wallet.pending
        if pending is not None and _pending_redeem_of(pending) == spend:
            block = wallet.claim_lost_redeem(claim_index, frozen_sequence, amount)
        else:
            if wallet.head is None:
                await _commit(client, wallet, wallet.open())
            block = wallet.claim(spend, claim_index, frozen_sequence, amount)
        await _commit(client, wallet, block, [payment.purse])
        store.mark_redeemed(spend.purse_id, spend.index)
        total += amount
    print(json.dumps({"claimed": total, "balance": wallet.balance}))


def _pending_redeem_of(pending: bytes) -> Spend | None:
    block = decode_block(pending)
    if block.kind != BlockKind.REDEEM:
        return None
    return RedeemPayload.decode(block.payload).spend


async def _refund(
    client: BankClient, wallet: Wallet, config: BankConfig, args: argparse.Namespace
) -> None:
    """Take back the remainder of every purse past its expiry and the grace period."""
    store = SqliteWalletStore(Path(args.wallet) / "wallet.db")
    now = int(time.time())
    total = 0
    for certificate, _, _ in store.purses():
        block = certificate.decoded()
        terms = PursePayload.decode(block.payload)
        if now < terms.expiry + config.refund_grace:
            continue
        statuses = [s for s in await client.purse_statuses(block.hash(), 0) if s is not None]
        if len(statuses) < config.committee.quorum or any(s.refunded for s in statuses):
            continue
        # Every validator must agree on the remainder (a redeem may be in flight).
        remainders = {s.remaining for s in statuses}
        if len(remainders) != 1 or not (remaining := remainders.pop()):
            continue
        await _commit(client, wallet, wallet.refund(block.hash(), remaining), [certificate])
        total += remaining
    print(json.dumps({"refunded": total, "balance": wallet.balance}))


def verify_receipt(token: str) -> Receipt:
    receipt = Receipt.decode(_untoken(RECEIPT_PREFIX, token))
    if not receipt.verify():
        raise DecodeError("the receipt's signature does not verify")
    return receipt


# parser ----------------------------------------------------------------------------------------


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``neonet bank ...`` to the ``neonet`` parser."""
    bank = commands.add_parser("bank", help="NeoBankof: wallets, POS, validators, mint")
    sub = bank.add_subparsers(dest="bank_command", required=True)

    def online(parser: argparse.ArgumentParser, action: object) -> None:
        parser.add_argument("--bank", required=True, help="bank.json (from `neonet bank init`)")
        parser.add_argument("--wallet", required=True, help="the wallet directory")
        parser.add_argument("--timeout", type=float, default=60.0)
        parser.set_defaults(handler=lambda args: _run_online(args, action))

    init = sub.add_parser("init", help="create a test bank: root, 4 validators, mint")
    init.add_argument("directory")
    init.add_argument("--base-port", type=int, default=47100)
    init.add_argument(
        "--refund-grace",
        type=int,
        default=DEFAULT_REFUND_GRACE,
        help="seconds after a purse's expiry before its remainder can be refunded",
    )
    init.set_defaults(handler=cmd_init)

    validator = sub.add_parser("validator", help="run one committee validator")
    validator.add_argument("--bank", required=True)
    validator.add_argument("--index", type=int, required=True)
    validator.add_argument("--db", help="vote store (default next to bank.json)")
    validator.set_defaults(handler=lambda args: trio.run(_validator, args))

    mint = sub.add_parser("mint", help="the mint issues money (and pays it to --to)")
    mint.add_argument("amount", type=int)
    mint.add_argument("--to", help="account to pay (hex)")
    online(mint, _mint)

    wallet = sub.add_parser("wallet", help="a wallet").add_subparsers(
        dest="wallet_command", required=True
    )
    create = wallet.add_parser("create", help="new account key (encrypted keystore)")
    create.add_argument("--wallet", required=True)
    create.set_defaults(handler=cmd_wallet_create)
    online(wallet.add_parser("open", help="open the account on the ledger"), _open_account)
    online(wallet.add_parser("balance", help="certified balance and incoming"), _balance)
    online(wallet.add_parser("history", help="the certified chain"), _history)
    send = wallet.add_parser("send", help="pay an account online")
    send.add_argument("account")
    send.add_argument("amount", type=int)
    send.add_argument("--memo", default="")
    online(send, _send)
    online(wallet.add_parser("receive", help="receive certified incoming transfers"), _receive)
    purse = wallet.add_parser("open-purse", help="certify an offline purse")
    purse.add_argument("--cap", type=int, required=True, help="per-payment cap")
    purse.add_argument("--count", type=int, required=True, help="number of payments")
    purse.add_argument("--expires-in", type=int, default=7 * 86400, help="seconds")
    online(purse, _open_purse)
    pay = wallet.add_parser("pay-offline", help="sign an offline payment token (no network)")
    pay.add_argument("payee", help="the POS account (hex)")
    pay.add_argument("amount", type=int)
    pay.add_argument("--purse", help="purse ID prefix")
    pay.add_argument("--wallet", required=True)
    pay.set_defaults(handler=cmd_pay_offline)
    online(wallet.add_parser("refund", help="take back the remainder of expired purses"), _refund)

    pos = sub.add_parser("pos", help="a point of sale").add_subparsers(
        dest="pos_command", required=True
    )
    accept = pos.add_parser("accept", help="check a payment token offline, print a receipt")
    accept.add_argument("token", help="the token, or - for stdin")
    accept.add_argument("--bank", required=True)
    accept.add_argument("--wallet", required=True)
    accept.set_defaults(handler=cmd_pos_accept)
    receipts = pos.add_parser("receipts", help="list accepted payments")
    receipts.add_argument("--bank", required=True)
    receipts.add_argument("--wallet", required=True)
    receipts.set_defaults(handler=cmd_pos_receipts)
    online(pos.add_parser("redeem", help="redeem accepted payments online"), _redeem)
    online(
        pos.add_parser("claim", help="claim lost double-spent payments from frozen funds"),
        _claim,
    )
