"""NeoBankof over NeoNet streams: the validator service and what it shares with the client.

The trio layer over ``neonet.proto.bank`` (``docs/bank.md``, "Protocols"):
``ValidatorService`` serves ``/neonet/bank/transfer/2.0.0`` (sign, certify, fraud
proofs; a SIGN_BATCH's votes signed once, over their Merkle root) and
``/neonet/bank/sync/2.0.0`` (chain heads, then ranges) from one ``Validator`` engine.
``StreamHost``, ``BankConnection`` and ``receive_message`` are the stream framing both
sides use (``QuorumCheck``, the quorum check both run, lives in
``neonet.proto.bank.votes``); the client that talks to the committee is in
``neonet.apps.bank.client``.

Bad input on a stream is answered with REFUSED where it can be, the stream is closed, and
the service keeps running. A vote leaves the service only after the engine recorded it
in its (durable) store; the engine calls are synchronous, so trio runs them one at a time.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import Protocol

import trio

from neonet.apps.bank.store import SqliteVoteStore, StoreFailedError
from neonet.core.errors import DecodeError, RemoteProtocolError
from neonet.core.gcpolicy import settle_long_running_process
from neonet.core.ledger import Block, decode_block
from neonet.core.peer_id import PeerId
from neonet.net.yamux_session import YamuxStream
from neonet.proto.bank import wire
from neonet.proto.bank.messages import Certificate, FraudProof, block_hash
from neonet.proto.bank.state import Applied
from neonet.proto.bank.validator import Validator, Vote, VoteBatch
from neonet.proto.bank.votes import QuorumCheck, VerifiedVotes, verify_in_batches

__all__ = [
    "BankConnection",
    "GroupCommit",
    "StreamHost",
    "ValidatorService",
    "settle_validator_process",
]

logger = logging.getLogger("neonet.bank")
REQUEST_TIMEOUT = 10.0
#: How long (s) the event loop may hold the GIL while the group commit's writer thread
#: waits for it (CPython's default: 5 ms). See ``settle_validator_process``.
VALIDATOR_SWITCH_INTERVAL = 0.0005


def settle_validator_process() -> None:
    """Process settings for a validator serving with group commit, once it is set up:
    the collector setting of NeoNet's long-running processes (``neonet.core.gcpolicy``)
    and a short GIL switch interval.

    Why the interval: the writer thread gives up the GIL around its SQLite calls (BEGIN,
    the statements, COMMIT and its fsync) and must get it back from the event loop, which
    runs the engine on the next request meanwhile; with CPython's 5 ms default each time
    may cost up to 5 ms, and every answer of the batch waits for the write.
    Measured: a 64-row batch written while another thread runs Python took 5.6-11.6 ms
    (median) with the default, 0.7-1.0 ms with 0.2-0.5 ms (docs/benchmarks.md, session 6).
    A process setting, so the embedding program decides (like the collector's).
    """
    settle_long_running_process()
    sys.setswitchinterval(VALIDATOR_SWITCH_INTERVAL)


class StreamHost(Protocol):
    """What the bank needs of a node or host."""

    def set_stream_handler(
        self, protocol: str, handler: Callable[[YamuxStream], Awaitable[None]]
    ) -> None: ...

    async def new_stream(self, peer: PeerId, protocols: Sequence[str]) -> YamuxStream: ...


class BankConnection:
    """One stream carrying requests and answers in turn (safe to share between tasks)."""

    def __init__(self, stream: YamuxStream) -> None:
        self.stream = stream
        self._reader = wire.FrameReader()
        self._lock = trio.Lock()
        self.broken = False

    async def request(self, message: list[object]) -> list[object]:
        """Send a request and return its answer. Not cancel-safe for the stream: a
        cancelled request marks the connection broken (its answer would be misread)."""
        async with self._lock:
            if self.broken:
                raise RemoteProtocolError("bank connection is broken")
            self.broken = True
            await self.stream.send_all(wire.frame(message))
            answer = await receive_message(self.stream, self._reader)
            if answer is None:
                raise RemoteProtocolError("the peer closed the bank stream")
            self.broken = False
            return answer

    async def aclose(self) -> None:
        await self.stream.aclose()


async def receive_message(stream: YamuxStream, reader: wire.FrameReader) -> list[object] | None:
    """The next message on ``stream``, or ``None`` at a clean end of stream."""
    while True:
        message = reader.next_message()
        if message is not None:
            return message
        data = await stream.receive_some(65536)
        if not data:
            return None
        reader.receive_data(data)


class GroupCommit:
    """Batches the durable writes of concurrent requests into one commit (one fsync).

    A handler calls ``store.begin_request()``, runs the engine, then ``await
    wait(store.needed_batch())`` when that is not ``None``: the batch holding the rows its
    answer depends on, queued by it or still being written for another request (a resend
    of the same block). One waiter at a time writes the whole queue in a worker thread
    while the event loop keeps serving (rows queued meanwhile form the next batch); each
    waiter returns once its batch is on disk, and only then answers. A failed write
    raises ``StoreFailedError`` in every waiter and the store refuses all later requests.
    """

    def __init__(self, store: SqliteVoteStore) -> None:
        self._store = store
        self._written = 0  # batches below this number are on disk
        self._running = False
        self._event = trio.Event()
        self.commits = 0

    async def wait(self, batch: int) -> None:
        while self._written <= batch:
            if self._store.failed is not None:
                raise StoreFailedError("a vote batch could not be written") from self._store.failed
            if self._running:
                await self._event.wait()
                continue
            self._running = True
            try:
                number, rows = self._store.take_batch()
                try:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(self._store.write_batch, rows)
                except BaseException as exc:
                    self._store.batch_failed(exc)
                    logger.error("bank: a vote batch could not be written, signing stops: %r", exc)
                    if isinstance(exc, Exception):
                        raise StoreFailedError("a vote batch could not be written") from exc
                    raise
                self._store.batch_written(number)
                self.commits += 1
                self._written = number + 1
            finally:
                self._running = False
                self._event.set()
                self._event = trio.Event()


_NONE_CHECKED: frozenset[bytes] = frozenset()
_NONE_SIGNED: Mapping[bytes, Block] = MappingProxyType({})


class ValidatorService:
    """Serves one validator engine on both bank protocols."""

    def __init__(
        self,
        validator: Validator,
        store: SqliteVoteStore | None = None,
        *,
        on_proof_found: Callable[[FraudProof], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.validator = validator
        self.committee_id = validator.committee.id()
        self.clock = clock  # wall-clock seconds: purse expiry and refund times are dates
        self.on_proof_found = on_proof_found  # e.g. publish it over GossipSub
        self.store = store  # also keeps applied certificates and proofs, when given
        self.requests = 0
        self.group_commit = None if store is None or not store.deferred else GroupCommit(store)
        self._verified_votes = VerifiedVotes()  # batch signatures recur across requests

    def install(self, host: StreamHost) -> None:
        host.set_stream_handler(wire.TRANSFER_PROTOCOL, self._serve)
        host.set_stream_handler(wire.SYNC_PROTOCOL, self._serve)

    async def _serve(self, stream: YamuxStream) -> None:
        reader = wire.FrameReader()
        try:
            while True:
                try:
                    message = await receive_message(stream, reader)
                    if message is None:
                        return
                    self.requests += 1
                    request = wire.parse_request(message, self.validator.recent_blocks)
                    commit = self.group_commit
                    if commit is None or self.store is None:
                        answer = self.answer(request)
                    else:
                        self.store.begin_request()
                        answer = self.answer(request)
                        needed = self.store.needed_batch()
                        if needed is not None:  # hold the answer until its votes are on disk
                            await commit.wait(needed)
                except StoreFailedError as exc:
                    logger.error("bank: no answer, the vote store failed: %s", exc)
                    return
                except DecodeError as exc:
                    refusal = [wire.REFUSED, f"bad request: {exc}", None, None]
                    await stream.send_all(wire.frame(refusal))
                    return
                await stream.send_all(wire.frame(answer))
        except (RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.info("bank stream ended: %s", exc)
        finally:
            await stream.aclose()

    def _apply(self, certificate: Certificate, quorum_checked: bool = False) -> Applied:
        outcome = self.validator.handle_certificate(certificate, quorum_checked)
        if (
            outcome is Applied.APPLIED
            and self.store is not None
            and self.validator.ledger.archive is None  # else the ledger archives each one
        ):
            self.store.add_certificate(certificate)
        return outcome

    def _check_batch(self, batch: Sequence[wire.Request]) -> tuple[set[bytes], dict[bytes, Block]]:
        """Batch verification for a whole SIGN_BATCH, in one verifier call: the votes of
        the certificates this validator has not applied (``QuorumCheck``) and the
        signatures of the blocks to sign (the Rust batch verifier amortises its work over
        them all). Returns the blocks whose certificate has a valid quorum and the blocks
        whose own signature verifies, decoded."""
        ledger = self.validator.ledger
        fresh: dict[bytes, Certificate] = {}
        for item in batch:
            for certificate in item.certificates:
                if certificate.block not in fresh and not ledger.has_applied(certificate.block):
                    fresh[certificate.block] = certificate
        certificates = list(fresh.values())
        quorums = QuorumCheck(certificates, ledger.committee, verified=self._verified_votes)
        items = list(quorums.pending)
        blocks: list[tuple[bytes, Block]] = []
        for item in batch:
            try:
                block = decode_block(item.block)
            except DecodeError:
                continue  # the engine refuses it
            items.append((block.key, block_hash(item.block), block.signature))
            blocks.append((item.block, block))
        verdicts = verify_in_batches(items)
        split = len(quorums.pending)
        valid = quorums.finish(verdicts[:split])
        checked = {c.block for c, ok in zip(certificates, valid, strict=True) if ok}
        signed = {
            data: block for (data, block), ok in zip(blocks, verdicts[split:], strict=True) if ok
        }
        return checked, signed

    def answer(
        self,
        request: wire.Request,
        checked: AbstractSet[bytes] = _NONE_CHECKED,
        signed: Mapping[bytes, Block] = _NONE_SIGNED,
        batch: VoteBatch | None = None,
    ) -> list[object]:
        """The answer to one request (synchronous: the engine and store calls are);
        ``checked``: blocks whose certificates' quorum was verified already; ``signed``:
        blocks whose signature was (decoded); ``batch``: the SIGN_BATCH whose votes are signed
        once, over their tree's root."""
        if request.kind == wire.SIGN_BATCH:
            checked, signed = self._check_batch(request.batch)
            votes = VoteBatch()
            answers = [self.answer(item, checked, signed, votes) for item in request.batch]
            return [wire.SIGN_BATCH, answers, self.validator.sign_batch(votes)]
        if request.kind == wire.SIGN:
            for certificate in request.certificates:
                self._apply(certificate, certificate.block in checked)
            decoded = signed.get(request.block)
            result = self.validator.handle_sign_request(
                request.block,
                int(self.clock()),
                signature_checked=decoded is not None,
                batch=batch,
                decoded=decoded,
            )
            if isinstance(result, Vote):
                if result.proof is not None and self.store is not None:
                    self.store.add_proof(result.proof)  # with the vote: the freeze survives
                if batch is not None:  # the vote is the batch's last leaf
                    return [wire.VOTE, result.validator, len(batch.leaves) - 1]
                return [wire.VOTE, result.validator, result.signature]
            if result.proof is not None:
                if self.store is not None:
                    self.store.add_proof(result.proof)
                if self.on_proof_found is not None:
                    self.on_proof_found(result.proof)
            proof = None if result.proof is None else result.proof.encode()
            return [wire.REFUSED, result.reason, proof, result.behind]
        if request.kind == wire.CERTIFY:
            return [wire.DONE, self._apply(request.certificates[0]).value]
        if request.kind == wire.PROOF:
            assert request.proof is not None
            account = self.validator.handle_fraud_proof(request.proof)
            if account is not None and self.store is not None:
                self.store.add_proof(request.proof)
            return [wire.DONE, "frozen" if account is not None else "invalid"]
        ledger = self.validator.ledger
        if request.kind == wire.PURSE:
            status = self.validator.purse_status(request.account, request.start)
            return [wire.PURSE, None if status is None else status.to_value()]
        if request.kind == wire.HEADS:
            accounts = sorted(a for a in ledger.accounts if a > request.account)
            heads = []
            for account in accounts[: request.count]:
                head = ledger.accounts[account].head
                heads.append([account, head.sequence, head.hash, head.balance])
            return [wire.HEADS, heads]
        if request.kind == wire.INCOMING:
            chosen = []
            for (payer, sequence), _ in ledger.pending_credits(request.account)[: wire.MAX_RANGE]:
                found = ledger.certificate_at(payer, sequence)
                if found is not None:
                    chosen.append(found)
            return [wire.RANGE, [c.to_value() for c in chosen]]
        chosen = ledger.chain(request.account, request.start, request.count)
        return [wire.RANGE, [c.to_value() for c in chosen]]
