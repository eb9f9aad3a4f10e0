"""NeoBankof batch votes and the certificate check (``docs/bank.md``, "Batch votes" and
"Committee, votes, certificates").

``vote_tree`` builds a SIGN_BATCH's Merkle tree of vote messages (a validator signs its
root once); ``QuorumCheck`` is the one certificate check, in two steps so that a caller
can verify its signatures in one batch with others (``verify_in_batches``), remembering
verified batch signatures in ``VerifiedVotes``. The per-vote fold (a leaf and its path
to a root) is the ledger core's ``vote_roots`` (Rust, with a pure twin). Sans-I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from neonet.core import backend

if TYPE_CHECKING:
    from neonet.proto.bank.messages import Certificate, Committee


def vote_tree(leaves: Sequence[bytes]) -> tuple[bytes, list[tuple[int, bytes]]]:
    """The root of the Merkle tree over ``leaves`` (vote messages, in batch order) and,
    per leaf, its ``(sides, path)`` for ``vote_roots`` (docs/bank.md, "Batch votes"):
    the ledger core's ``vote_tree`` (Rust, with a pure twin).

    Each level pairs nodes 0-1, 2-3, ...; a last node without a partner moves up
    unchanged. One leaf is its own root, with an empty path: a direct vote. A path is
    the siblings on the way up, 32 bytes each, one after the other.
    """
    return backend.vote_tree(leaves, True)


def vote_tree_root(leaves: Sequence[bytes]) -> bytes:
    """The root alone of ``vote_tree(leaves)`` (what a validator signs)."""
    return backend.vote_tree(leaves, False)[0]


class VerifiedVotes:
    """Signatures known to verify, ``(key, message, signature)``, at most ``limit`` (the
    oldest go first): the votes of one batch signature recur in many certificates."""

    __slots__ = ("_known", "limit")

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._known: dict[tuple[bytes, bytes, bytes], None] = {}

    def __contains__(self, triple: tuple[bytes, bytes, bytes]) -> bool:
        return triple in self._known

    def add(self, triple: tuple[bytes, bytes, bytes]) -> None:
        known = self._known
        if triple not in known:
            if len(known) >= self.limit:
                del known[next(iter(known))]
            known[triple] = None


_DIRECT = (0, b"")  # the path of a direct vote: its message is the vote message


class QuorumCheck:
    """The one certificate check (``docs/bank.md``, "Committee, votes, certificates"), in
    two steps so that a caller can verify its signatures in one batch with others.

    Each vote's signed message is the block's vote message (direct) or the root its path
    leads to (batched), both from ``vote_roots`` of the backend (the ledger core's Rust
    twin on the native backend); ``pending`` lists the distinct (key, message, signature) triples
    that need verifying (votes of one batch share one; those in ``verified`` are known);
    ``finish`` takes their verdicts and says which certificates hold 2f+1 valid votes of
    distinct committee members. A certificate with fewer than 2f+1 votes, or with a vote
    whose validator index is not below the committee size, is invalid without any hashing
    or signature work.
    """

    __slots__ = ("_committee", "_known", "_spans", "_verified", "pending")

    def __init__(
        self,
        certificates: Sequence[Certificate],
        committee: Committee,
        implementation: backend.Implementation = backend.ACTIVE,
        verified: VerifiedVotes | None = None,
    ) -> None:
        committee_id = committee.id()
        validators = committee.validators
        unique: dict[tuple[bytes, bytes, bytes], int] = {}
        vote_roots = implementation.vote_roots
        quorum = committee.quorum
        spans: list[list[int] | None] = []
        for certificate in certificates:
            votes = certificate.votes
            if len(votes) < quorum or any(vote[0] >= len(validators) for vote in votes):
                # Invalid at once: too few votes, or one naming no committee member (a
                # certificate padded with junk votes would have malleable bytes).
                spans.append(None)
                continue
            paths = [_DIRECT if len(vote) == 2 else (vote[2], vote[3]) for vote in votes]
            # A decoded certificate holds a canonical block: its body is block[1:-66].
            _, messages = vote_roots(committee_id, certificate.block[1:-66], paths)
            slots = []
            for vote, message in zip(votes, messages, strict=True):
                triple = (validators[vote[0]], message, vote[1])
                slots.append(unique.setdefault(triple, len(unique)))
            spans.append(slots)
        self._committee = committee
        self._spans = spans
        self._verified = verified
        items = list(unique)
        self._known = [verified is not None and triple in verified for triple in items]
        self.pending = [
            triple for triple, known in zip(items, self._known, strict=True) if not known
        ]

    def finish(self, results: Sequence[bool]) -> list[bool]:
        """Per certificate, whether it has a quorum, given the verdicts of ``pending``."""
        if len(results) != len(self.pending):
            raise ValueError("one verdict per pending signature")
        verdicts = list(self._known)
        outcomes = iter(results)
        pending = iter(self.pending)
        for i, known in enumerate(self._known):
            if not known:
                verdicts[i] = ok = next(outcomes)
                triple = next(pending)
                if ok and self._verified is not None:
                    self._verified.add(triple)
        quorum = self._committee.quorum
        return [
            slots is not None and sum(verdicts[slot] for slot in slots) >= quorum
            for slots in self._spans
        ]


def verify_in_batches(
    items: Sequence[tuple[bytes, bytes, bytes]],
    implementation: backend.Implementation = backend.ACTIVE,
) -> list[bool]:
    """``verify_signatures`` over ``items`` in calls of at most 4096."""
    verdicts: list[bool] = []
    for offset in range(0, len(items), 4096):
        verdicts.extend(implementation.verify_signatures(items[offset : offset + 4096]))
    return verdicts
