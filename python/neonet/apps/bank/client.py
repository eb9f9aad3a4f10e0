"""NeoBankof over NeoNet streams: the client that talks to the validator committee.

``BankClient`` gathers votes from the committee into certificates (batching concurrent
SIGN requests per validator into SIGN_BATCH messages), spreads certificates and proofs,
and syncs chains, verifying each synced chain through the batch verifiers
(``verify_chain`` and ``verify_signatures`` of the selected backend). The validator side
and the shared stream framing are in ``neonet.apps.bank.service``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import trio

from neonet.apps.bank.service import REQUEST_TIMEOUT, BankConnection, StreamHost
from neonet.core import backend
from neonet.core.errors import NeoNetError, RemoteProtocolError
from neonet.core.ledger import ChainHead, decode_block
from neonet.core.peer_id import PeerId
from neonet.proto.bank import wire
from neonet.proto.bank.messages import (
    Certificate,
    Committee,
    FraudProof,
    block_hash,
    check_certificates,
    vote_message,
)
from neonet.proto.bank.validator import Vote, assemble_certificate
from neonet.proto.bank.votes import vote_tree

logger = logging.getLogger("neonet.bank")


class CertificationFailed(NeoNetError):
    """No quorum: the refusals (and a fraud proof, if one was found)."""

    def __init__(self, reasons: list[str], proof: FraudProof | None) -> None:
        super().__init__("no certificate: " + "; ".join(reasons))
        self.reasons = reasons
        self.proof = proof


MAX_IDLE_CONNECTIONS = 64
# SIGN_BATCH messages in flight per validator. One: whatever queues during a round trip
# leaves as one batch when the answer is in. Measured against two (interleaved A/B on the
# same validators under load, docs/benchmarks.md session 6): a second sender sends the
# stragglers in small batches, which costs CPU on both sides and lowered the rate.
BATCH_SENDERS = 1


class _Pending:
    """One SIGN waiting in a batcher: ``callback`` runs when its answer is in."""

    __slots__ = ("answer", "callback", "done", "error", "message", "vote")

    def __init__(
        self, message: bytes, callback: Callable[[_Pending], None], done: trio.Event
    ) -> None:
        self.message = message  # the block's vote message: its leaf in a vote tree
        self.callback = callback
        self.done = done  # set once the block's certificate is formed (or failed)
        self.answer: list[object] | None = None
        self.error: BaseException | None = None
        # A VOTE answer's vote with its path, once the batch signature verified.
        self.vote: Vote | None = None

    def finish(self) -> None:
        self.callback(self)


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

    def enqueue(
        self,
        block: bytes,
        previous: list[Certificate],
        message: bytes,
        callback: Callable[[_Pending], None],
        done: trio.Event,
    ) -> None:
        """Queue a SIGN; ``message`` is what a vote for ``block`` signs (``certify``
        computes it once for all validators); ``callback`` gets its settled ``_Pending``
        (no task waits); ``done``: the block's ``certify`` is over (its votes need no
        more checking)."""
        self._queue.append((block, previous, _Pending(message, callback, done)))
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            while not self._queue:
                # One event for all of this batcher's senders: replacing it while another
                # sender waits on it would leave that sender asleep for good (each sender
                # used to make its own, so only the last one to go idle ever woke again).
                if self._wakeup.is_set():
                    self._wakeup = trio.Event()
                await self._wakeup.wait()
            items, self._queue = self._queue[: wire.MAX_BATCH], self._queue[wire.MAX_BATCH :]
            try:
                message = wire.sign_batch_request(
                    [(block, previous) for block, previous, _ in items]
                )
                answer = await self._client.ask(self._index, message, wire.TRANSFER_PROTOCOL)
                answers, signature = wire.parse_batch_answer(answer, len(items))
                self._check_votes(items, answers, signature)
                for (_, _, pending), item_answer in zip(items, answers, strict=True):
                    pending.answer = item_answer
            except (NeoNetError, OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                for _, _, pending in items:
                    pending.error = exc
            for _, _, pending in items:
                pending.finish()

    def _check_votes(
        self,
        items: list[tuple[bytes, list[Certificate], _Pending]],
        answers: list[list[object]],
        signature: bytes | None,
    ) -> None:
        """Check the one batch signature: it must sign the root of the vote tree over the
        vote messages of the items answered VOTE, in order (``wire.parse_batch_answer``
        checked the positions). Each of those items then gets its vote with its path."""
        voted = [
            pending
            for (_, _, pending), answer in zip(items, answers, strict=True)
            if answer[0] == wire.VOTE and answer[1] == self._index
        ]
        if not voted or signature is None or all(pending.done.is_set() for pending in voted):
            return  # nothing voted, or every block has its certificate: nothing to check
        root, paths = vote_tree([pending.message for pending in voted])
        key = self._client.committee.validators[self._index]
        if not backend.verify_signature(key, root, signature):
            return  # every vote of this answer is bad
        for pending, (sides, path) in zip(voted, paths, strict=True):
            pending.vote = Vote(self._index, signature, None, sides, path)


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

    async def _sign(self, index: int, block: bytes, previous: list[Certificate]) -> list[object]:
        """One unbatched SIGN answer (``certify`` without a nursery; with one, the
        batcher sends SIGN_BATCH messages instead)."""
        return await self.ask(index, wire.sign_request(block, previous), wire.TRANSFER_PROTOCOL)

    def _batcher(self, index: int) -> _Batcher:
        """Validator ``index``'s batcher (started on first use; needs the nursery)."""
        batcher = self._batchers.get(index)
        if batcher is None:
            assert self._nursery is not None
            batcher = self._batchers[index] = _Batcher(self, index)
            for _ in range(BATCH_SENDERS):
                self._nursery.start_soon(batcher.run)
        return batcher

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
        message = vote_message(self.committee_id, block_hash(block))
        quorum = self.committee.quorum
        batched_answer = self._nursery is not None  # SIGN_BATCH: votes checked by the batcher

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

        def catch_up(answer: list[object]) -> list[Certificate] | None:
            """The certificates a validator that says it is behind needs, if we have them."""
            expected = _behind(answer)
            if expected is None or not own:
                return None
            first_sequence = decode_block(block).sequence - len(own)
            missing = own[max(expected - first_sequence, 0) :]
            return [*missing[-wire.MAX_PREVIOUS + len(extra) :], *extra]

        def settle(
            index: int, answer: list[object] | None, checked: Vote | None, error: str | None
        ) -> None:
            """One validator's answer; ``checked``: its vote, verified (batch answers)."""
            if answer is None:
                reasons.append(f"validator {index}: {error}")
            elif checked is not None:
                votes.append(checked)
            elif answer[0] == wire.VOTE and batched_answer:
                reasons.append(f"validator {index}: bad vote")
            else:
                try:
                    self._take(index, answer, unchecked, reasons, proofs)
                except NeoNetError as exc:  # e.g. a malformed proof in a refusal
                    reasons.append(f"validator {index}: {exc}")
            if len(votes) + len(unchecked) >= quorum:
                check_votes()
            answered = len(votes) + len(unchecked) + len(reasons)
            if len(votes) >= quorum or answered == len(self.validators):
                check_votes()
                done.set()

        async def one(index: int) -> None:
            try:
                answer = await self._sign(index, block, [*own[-1:], *extra])
                retry = catch_up(answer)
                if retry is not None:
                    answer = await self._sign(index, block, retry)
            except (NeoNetError, OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                settle(index, None, None, str(exc))
                return
            settle(index, answer, None, None)

        # ``batched`` reaches itself through this list (for a retry), not through its own
        # closure cell: the list is emptied when this call ends, so the closures, lists and
        # votes of a certify are freed by reference counting at once instead of waiting,
        # as a reference cycle, for the cyclic collector (whose passes then had ~80 such
        # objects per transfer in flight to walk: docs/benchmarks.md, session 6).
        retry_with: list[Callable[[int, bool], Callable[[_Pending], None]]] = []

        def batched(index: int, retried: bool) -> Callable[[_Pending], None]:
            """What to do with validator ``index``'s answer from a SIGN_BATCH: no task per
            validator and transfer, the batcher calls this when the answer is in."""

            def on_answer(pending: _Pending) -> None:
                if done.is_set() or not retry_with:
                    return  # the certificate is formed (or certify is over): nothing to add
                if pending.error is not None or pending.answer is None:
                    settle(index, None, None, str(pending.error))
                    return
                retry = None if retried else catch_up(pending.answer)
                if retry is not None:
                    again = retry_with[0](index, True)
                    self._batcher(index).enqueue(block, retry, message, again, done)
                    return
                settle(index, pending.answer, pending.vote, None)

            return on_answer

        if self._nursery is not None:
            retry_with.append(batched)
            try:
                for index in range(len(self.validators)):
                    self._batcher(index).enqueue(
                        block, [*own[-1:], *extra], message, batched(index, False), done
                    )
                await done.wait()
            finally:
                retry_with.clear()
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
