"""NeoBankof over NeoNet streams: the validator service and the client that uses it.

The trio layer over ``neonet.proto.bank`` (``docs/bank.md``, "Protocols"):
``ValidatorService`` serves ``/neonet/bank/transfer/1.0.0`` (sign, certify, fraud
proofs) and ``/neonet/bank/sync/1.0.0`` (chain heads, then ranges) from one
``Validator`` engine; ``BankClient`` gathers votes from the committee into certificates,
spreads certificates and proofs, and syncs chains, verifying each synced chain through
the batch verifiers (``verify_chain`` and ``verify_signatures`` of the selected backend).

Bad input on a stream is answered with REFUSED where it can be, the stream is closed, and
the service keeps running. A vote leaves the service only after the engine recorded it
in its (durable) store; the engine calls are synchronous, so trio runs them one at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from collections.abc import Set as AbstractSet
from contextlib import asynccontextmanager
from typing import Protocol

import trio

from neonet.apps.bank.store import SqliteVoteStore
from neonet.core import backend
from neonet.core.errors import DecodeError, NeoNetError, RemoteProtocolError
from neonet.core.ledger import ChainHead, decode_block
from neonet.core.peer_id import PeerId
from neonet.net.yamux_session import YamuxStream
from neonet.proto.bank import wire
from neonet.proto.bank.messages import (
    Certificate,
    Committee,
    FraudProof,
    block_hash,
    vote_message,
)
from neonet.proto.bank.state import Applied
from neonet.proto.bank.validator import Validator, Vote, assemble_certificate

logger = logging.getLogger("neonet.bank")
REQUEST_TIMEOUT = 10.0


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

    A handler whose request queued rows calls ``await wait(batch())``. One waiter at a
    time writes the whole queue in a worker thread while the event loop keeps serving
    (rows queued meanwhile form the next batch); each waiter returns once the batch
    holding its rows is on disk, and only then answers.
    """

    def __init__(self, store: SqliteVoteStore) -> None:
        self._store = store
        self._batch = 0  # the batch that newly queued rows belong to
        self._written = 0  # batches below this number are on disk
        self._running = False
        self._event = trio.Event()
        self.commits = 0

    def batch(self) -> int:
        return self._batch

    async def wait(self, batch: int) -> None:
        while self._written <= batch:
            if self._running:
                await self._event.wait()
                continue
            self._running = True
            try:
                writing = self._batch
                self._batch += 1
                rows = self._store.take_batch()
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._store.write_batch, rows)
                self.commits += 1
                self._written = writing + 1
            finally:
                self._running = False
                self._event.set()
                self._event = trio.Event()


_NONE_CHECKED: frozenset[bytes] = frozenset()


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
        self.clock = clock  # wall-clock seconds: purse expiry and refund times are dates
        self.on_proof_found = on_proof_found  # e.g. publish it over GossipSub
        self.store = store  # also keeps applied certificates and proofs, when given
        self.requests = 0
        self.group_commit = None if store is None or not store.deferred else GroupCommit(store)

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
                    answer = self.answer(wire.parse_request(message))
                    commit = self.group_commit
                    if commit is not None and self.store is not None and self.store.dirty:
                        await commit.wait(commit.batch())
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
        if outcome is Applied.APPLIED and self.store is not None:
            self.store.add_certificate(certificate)
        return outcome

    def _check_quorums(self, batch: Sequence[wire.Request]) -> set[bytes]:
        """The blocks of the batch's certificates that this validator has not applied and
        whose quorum holds, checked with all their votes in one batch verification (the
        votes of one validator coalesce in the Rust batch verifier)."""
        ledger = self.validator.ledger
        fresh: dict[bytes, Certificate] = {}
        for item in batch:
            for certificate in item.certificates:
                if certificate.block not in fresh and not ledger.has_applied(certificate.block):
                    fresh[certificate.block] = certificate
        certificates = list(fresh.values())
        verdicts = check_certificates(certificates, ledger.committee)
        return {c.block for c, ok in zip(certificates, verdicts, strict=True) if ok}

    def answer(
        self, request: wire.Request, checked: AbstractSet[bytes] = _NONE_CHECKED
    ) -> list[object]:
        """The answer to one request (synchronous: the engine and store calls are);
        ``checked``: blocks whose certificates' quorum was verified already."""
        if request.kind == wire.SIGN_BATCH:
            checked = self._check_quorums(request.batch)
            return [wire.SIGN_BATCH, [self.answer(item, checked) for item in request.batch]]
        if request.kind == wire.SIGN:
            for certificate in request.certificates:
                self._apply(certificate, certificate.block in checked)
            result = self.validator.handle_sign_request(request.block, int(self.clock()))
            if isinstance(result, Vote):
                if result.proof is not None and self.store is not None:
                    self.store.add_proof(result.proof)  # with the vote: the freeze survives
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
            return [wire.RANGE, [[c.block, [list(v) for v in c.votes]] for c in chosen]]
        state = ledger.accounts.get(request.account)
        chosen = [] if state is None else state.certificates[request.start :][: request.count]
        return [wire.RANGE, [[c.block, [list(v) for v in c.votes]] for c in chosen]]


class CertificationFailed(NeoNetError):
    """No quorum: the refusals (and a fraud proof, if one was found)."""

    def __init__(self, reasons: list[str], proof: FraudProof | None) -> None:
        super().__init__("no certificate: " + "; ".join(reasons))
        self.reasons = reasons
        self.proof = proof


def check_certificates(
    certificates: Sequence[Certificate],
    committee: Committee,
    implementation: backend.Implementation = backend.ACTIVE,
) -> list[bool]:
    """``check_certificate`` for many at once: all votes go through one batch verifier."""
    committee_id = committee.id()
    items: list[tuple[bytes, bytes, bytes]] = []
    spans = []
    for certificate in certificates:
        # A decoded certificate holds a canonical block: its body is block[1:-66].
        message = vote_message(
            committee_id, implementation.hash_block_body(certificate.block[1:-66])
        )
        start = len(items)
        for index, signature in certificate.votes:
            if index < len(committee.validators):
                items.append((committee.validators[index], message, signature))
        spans.append((start, len(items)))
    verdicts: list[bool] = []
    for offset in range(0, len(items), 4096):
        verdicts.extend(implementation.verify_signatures(items[offset : offset + 4096]))
    return [
        len(certificate.votes) >= committee.quorum and sum(verdicts[a:b]) >= committee.quorum
        for certificate, (a, b) in zip(certificates, spans, strict=True)
    ]


MAX_IDLE_CONNECTIONS = 64
BATCH_SENDERS = 2  # SIGN_BATCH messages in flight per validator


class _Pending:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.answer: list[object] | None = None
        self.error: BaseException | None = None
        self.vote_valid: bool | None = None  # a VOTE answer's signature, checked in batch


class _Batcher:
    """Gathers concurrent SIGN requests for one validator into SIGN_BATCH messages.

    No timer: whatever is queued when a sender is free goes out as one message, so a
    lone request leaves at once and a busy client sends few, large messages.
    """

    def __init__(self, client: BankClient, index: int) -> None:
        self._client = client
        self._index = index
        self._queue: list[tuple[bytes, list[Certificate], _Pending]] = []
        self._wakeup = trio.Event()

    async def submit(
        self, block: bytes, previous: list[Certificate]
    ) -> tuple[list[object], bool | None]:
        pending = _Pending()
        self._queue.append((block, previous, pending))
        self._wakeup.set()
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.answer is not None
        return pending.answer, pending.vote_valid

    async def run(self) -> None:
        while True:
            while not self._queue:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            items, self._queue = self._queue[: wire.MAX_BATCH], self._queue[wire.MAX_BATCH :]
            try:
                message = wire.sign_batch_request(
                    [(block, previous) for block, previous, _ in items]
                )
                answer = await self._client.ask(self._index, message, wire.TRANSFER_PROTOCOL)
                answers = wire.parse_batch_answer(answer, len(items))
                self._check_votes(items, answers)
                for (_, _, pending), item_answer in zip(items, answers, strict=True):
                    pending.answer = item_answer
            except (NeoNetError, OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                for _, _, pending in items:
                    pending.error = exc
            for _, _, pending in items:
                pending.done.set()

    def _check_votes(
        self,
        items: list[tuple[bytes, list[Certificate], _Pending]],
        answers: list[list[object]],
    ) -> None:
        """Verify every vote of one batch answer in one call: all are by this validator's
        key, which the Rust batch verifier coalesces."""
        committee = self._client.committee
        key = committee.validators[self._index]
        committee_id = self._client.committee_id
        checks: list[tuple[bytes, bytes, bytes]] = []
        voted: list[_Pending] = []
        for (block, _, pending), answer in zip(items, answers, strict=True):
            if (
                answer[0] == wire.VOTE
                and len(answer) == 3
                and answer[1] == self._index
                and type(answer[2]) is bytes
                and len(answer[2]) == 64
            ):
                checks.append((key, vote_message(committee_id, block_hash(block)), answer[2]))
                voted.append(pending)
        for offset in range(0, len(checks), 4096):
            verdicts = backend.verify_signatures(checks[offset : offset + 4096])
            for pending, valid in zip(voted[offset : offset + 4096], verdicts, strict=True):
                pending.vote_valid = valid


class BankClient:
    """Talks to the committee: certify blocks, spread certificates and proofs, sync chains.

    Each request takes an idle stream to the validator (or opens one), so many requests
    run at once. With a ``nursery`` (``open_bank_client``), ``certify`` returns at the
    quorum and lets the remaining validators' answers finish in the background, so they
    keep up; without one it waits for every answer (or its timeout).
    """

    def __init__(
        self,
        host: StreamHost,
        committee: Committee,
        validators: Sequence[PeerId],
        nursery: trio.Nursery | None = None,
    ) -> None:
        if len(validators) != len(committee.validators):
            raise ValueError("one peer per committee member, in committee order")
        self.host = host
        self.committee = committee
        self.validators = list(validators)
        self.committee_id = committee.id()
        self._nursery = nursery
        self._idle: dict[tuple[int, str], list[BankConnection]] = {}
        self._batchers: dict[int, _Batcher] = {}

    async def ask(self, index: int, message: list[object], protocol: str) -> list[object]:
        """One request to validator ``index`` and its answer (``REQUEST_TIMEOUT``)."""
        idle = self._idle.setdefault((index, protocol), [])
        with trio.fail_after(REQUEST_TIMEOUT):
            if idle:
                connection = idle.pop()
            else:
                connection = BankConnection(
                    await self.host.new_stream(self.validators[index], [protocol])
                )
            try:
                answer = await connection.request(message)
            finally:
                if connection.broken or len(idle) >= MAX_IDLE_CONNECTIONS:
                    with trio.CancelScope(shield=True):
                        await connection.aclose()
                else:
                    idle.append(connection)
        return answer

    async def _sign(
        self, index: int, block: bytes, previous: list[Certificate]
    ) -> tuple[list[object], bool | None]:
        """One SIGN answer: batched with other concurrent requests when there is a nursery
        (then a VOTE's signature comes checked: ``True``/``False``; else ``None``)."""
        if self._nursery is None:
            request = wire.sign_request(block, previous)
            return await self.ask(index, request, wire.TRANSFER_PROTOCOL), None
        batcher = self._batchers.get(index)
        if batcher is None:
            batcher = self._batchers[index] = _Batcher(self, index)
            for _ in range(BATCH_SENDERS):
                self._nursery.start_soon(batcher.run)
        return await batcher.submit(block, previous)

    async def certify(
        self,
        block: bytes,
        history: Sequence[Certificate] = (),
        depends: Sequence[Certificate] = (),
    ) -> Certificate:
        """Gather 2f+1 votes for ``block``; ``CertificationFailed`` if they do not come.

        ``history`` is a tail of the account's certified chain, in order, ending just
        before ``block``: its last certificate goes along, and a validator that says it
        is further behind gets the missing ones (up to ``wire.MAX_PREVIOUS``).
        ``depends`` are certificates the block needs (a RECEIVE's transfer, a REDEEM's
        purse). Votes are checked in one batch once there are enough of them.
        """
        votes: list[Vote] = []
        unchecked: list[Vote] = []
        reasons: list[str] = []
        proofs: list[FraudProof] = []
        done = trio.Event()
        own = list(history)
        extra = list(depends)
        first_sequence = decode_block(block).sequence - len(own)
        message = vote_message(self.committee_id, block_hash(block))
        quorum = self.committee.quorum

        def check_votes() -> None:
            if not unchecked:
                return
            items = [
                (self.committee.validators[v.validator], message, v.signature) for v in unchecked
            ]
            for vote, ok in zip(unchecked, backend.verify_signatures(items), strict=True):
                if ok:
                    votes.append(vote)
                else:
                    reasons.append(f"validator {vote.validator}: bad vote")
            unchecked.clear()

        async def one(index: int) -> None:
            try:
                answer, valid = await self._sign(index, block, [*own[-1:], *extra])
                expected = _behind(answer)
                if expected is not None and own:
                    missing = own[max(expected - first_sequence, 0) :]
                    catch_up = [*missing[-wire.MAX_PREVIOUS + len(extra) :], *extra]
                    answer, valid = await self._sign(index, block, catch_up)
                if valid is None:
                    self._take(index, answer, unchecked, reasons, proofs)
                elif valid and type(answer[2]) is bytes:
                    votes.append(Vote(index, answer[2]))
                else:
                    reasons.append(f"validator {index}: bad vote")
            except (NeoNetError, OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                reasons.append(f"validator {index}: {exc}")
            if len(votes) + len(unchecked) >= quorum:
                check_votes()
            answered = len(votes) + len(unchecked) + len(reasons)
            if len(votes) >= quorum or answered == len(self.validators):
                check_votes()
                done.set()

        if self._nursery is not None:
            for index in range(len(self.validators)):
                self._nursery.start_soon(one, index)
            await done.wait()
        else:
            async with trio.open_nursery() as nursery:
                for index in range(len(self.validators)):
                    nursery.start_soon(one, index)
        certificate = assemble_certificate(block, votes, self.committee)
        if certificate is None:
            raise CertificationFailed(reasons, proofs[0] if proofs else None)
        return certificate

    def _take(
        self,
        index: int,
        answer: list[object],
        unchecked: list[Vote],
        reasons: list[str],
        proofs: list[FraudProof],
    ) -> None:
        if answer[0] == wire.VOTE and len(answer) == 3 and answer[1] == index:
            signature = answer[2]
            if type(signature) is bytes and len(signature) == 64:
                unchecked.append(Vote(index, signature))
            else:
                reasons.append(f"validator {index}: bad vote")
        elif answer[0] == wire.REFUSED and len(answer) == 4:
            reasons.append(f"validator {index}: {answer[1]}")
            if type(answer[2]) is bytes:
                proofs.append(FraudProof.decode(answer[2]))
        else:
            reasons.append(f"validator {index}: unexpected answer")

    async def broadcast(self, message: list[object]) -> list[list[object] | None]:
        """Send a CERTIFY or PROOF request to every validator; their answers (None: failed)."""
        answers: list[list[object] | None] = [None] * len(self.validators)

        async def one(index: int) -> None:
            try:
                answers[index] = await self.ask(index, message, wire.TRANSFER_PROTOCOL)
            except (NeoNetError, OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                logger.info("validator %d did not take the broadcast: %s", index, exc)

        async with trio.open_nursery() as nursery:
            for index in range(len(self.validators)):
                nursery.start_soon(one, index)
        return answers

    async def spread_certificate(self, certificate: Certificate) -> None:
        await self.broadcast(wire.certify_request(certificate))

    async def spread_proof(self, proof: FraudProof) -> None:
        await self.broadcast(wire.proof_request(proof))

    async def incoming(self, index: int, account: bytes) -> list[Certificate]:
        """Certified transfers to ``account`` not yet received, each checked for a quorum."""
        answer = await self.ask(index, wire.incoming_request(account), wire.SYNC_PROTOCOL)
        certificates = wire.parse_certificates(answer)
        if not all(check_certificates(certificates, self.committee)):
            raise RemoteProtocolError("an incoming transfer lacks a quorum of valid votes")
        return certificates

    async def purse_statuses(self, purse_id: bytes, position: int) -> list[wire.PurseStatus | None]:
        """Every validator's view of a purse and its owner (PURSE), concurrently; ``None``
        for a validator that does not know the purse or did not answer."""
        statuses: list[wire.PurseStatus | None] = [None] * len(self.validators)

        async def one(index: int) -> None:
            try:
                answer = await self.ask(
                    index, wire.purse_request(purse_id, position), wire.SYNC_PROTOCOL
                )
                statuses[index] = wire.parse_purse_status(answer)
            except (NeoNetError, OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                logger.info("validator %d gave no purse status: %s", index, exc)

        async with trio.open_nursery() as nursery:
            for index in range(len(self.validators)):
                nursery.start_soon(one, index)
        return statuses

    async def heads(self, index: int) -> list[tuple[bytes, int, bytes, int]]:
        """Every chain head a validator knows (paged)."""
        result: list[tuple[bytes, int, bytes, int]] = []
        after = b""
        while True:
            answer = await self.ask(
                index, wire.heads_request(after, wire.MAX_HEADS), wire.SYNC_PROTOCOL
            )
            page = wire.parse_heads(answer)
            result.extend(page)
            if len(page) < wire.MAX_HEADS:
                return result
            after = page[-1][0]

    async def sync_chain(
        self, index: int, account: bytes, mint_account: bytes, start: ChainHead | None = None
    ) -> list[Certificate]:
        """The account's certificates after ``start`` from one validator, verified: the
        chain by ``verify_chain`` and every vote by ``verify_signatures`` (batched).
        ``RemoteProtocolError`` if the validator sent anything that does not verify."""
        certificates: list[Certificate] = []
        sequence = 0 if start is None else start.sequence + 1
        while True:
            answer = await self.ask(
                index, wire.range_request(account, sequence, wire.MAX_RANGE), wire.SYNC_PROTOCOL
            )
            page = wire.parse_certificates(answer)
            certificates.extend(page)
            sequence += len(page)
            if len(page) < wire.MAX_RANGE:
                break
        verify_synced(certificates, self.committee, mint_account, start)
        return certificates


def verify_synced(
    certificates: Sequence[Certificate],
    committee: Committee,
    mint_account: bytes,
    start: ChainHead | None,
    implementation: backend.Implementation = backend.ACTIVE,
) -> ChainHead | None:
    """Check a synced chain: blocks in one ``verify_chain`` call per 100,000, votes batched.

    ``RemoteProtocolError`` if anything does not verify; the new head otherwise.
    """
    head = start
    blocks = [certificate.block for certificate in certificates]
    for offset in range(0, len(blocks), 100_000):
        verdict = implementation.verify_chain(
            blocks[offset : offset + 100_000], mint_account=mint_account, start=head
        )
        if verdict.failure is not None:
            raise RemoteProtocolError(f"synced chain refused: {verdict.failure.message}")
        head = verdict.head
    if not all(check_certificates(certificates, committee, implementation)):
        raise RemoteProtocolError("a synced certificate lacks a quorum of valid votes")
    return head


def _behind(answer: list[object]) -> int | None:
    if answer[0] == wire.REFUSED and len(answer) == 4 and type(answer[3]) is int:
        return answer[3]
    return None


@asynccontextmanager
async def open_bank_client(
    host: StreamHost, committee: Committee, validators: Sequence[PeerId]
) -> AsyncIterator[BankClient]:
    """A ``BankClient`` whose late validator answers finish in the background."""
    async with trio.open_nursery() as nursery:
        yield BankClient(host, committee, validators, nursery)
        nursery.cancel_scope.cancel()
