"""Where a record lives in the SSN federation: rendezvous (highest-random-weight) hashing.

Every presence or name record has a key (the peer ID bytes, or the normalised name);
its owners are the ``R`` live SSNs with the highest score ``weight(key, member)``
(Thaler and Ravishankar's rendezvous hashing). Each SSN holds the full member list, so
any SSN computes the owners of any key locally and a lookup costs one hop. When a member
joins or dies only the keys for which it is (or becomes) one of the top ``R`` move:
about ``R / N`` of them, and ``handoff`` tells an SSN which of its records to copy where.

The weight is 64 bits: ``mix(hash(key) ^ hash(member))`` with BLAKE3 (domain-tagged) for
the two hashes, computed once per key and member, and the SplitMix64 finaliser to mix,
so ranking 1,000 members costs a thousand integer mixes rather than a thousand BLAKE3
calls. Ties (probability 2**-64) fall back to the member ID. Pure functions, no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from functools import lru_cache

import blake3

DEFAULT_REPLICAS = 3
_KEY_DOMAIN = b"neonet/ssn/placement/key/v1"
_MEMBER_DOMAIN = b"neonet/ssn/placement/member/v1"
_MASK = (1 << 64) - 1


def _hash64(domain: bytes, data: bytes) -> int:
    digest = blake3.blake3(domain + len(data).to_bytes(4, "big") + data).digest(8)
    return int.from_bytes(digest, "big")


def key_hash(key: bytes) -> int:
    """The 64-bit hash of a record key (domain-separated from member hashes)."""
    return _hash64(_KEY_DOMAIN, key)


@lru_cache(maxsize=65536)
def member_hash(member_id: bytes) -> int:
    """The 64-bit hash of a member ID (cached: the member list changes rarely)."""
    return _hash64(_MEMBER_DOMAIN, member_id)


def _mix(value: int) -> int:
    # SplitMix64's finaliser: a bijection on 64 bits with full avalanche.
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def weight(key: bytes, member_id: bytes) -> int:
    return _mix(key_hash(key) ^ member_hash(member_id))


def owners(key: bytes, members: Iterable[bytes], replicas: int = DEFAULT_REPLICAS) -> list[bytes]:
    """The ``replicas`` members that own ``key``, highest weight first."""
    if replicas < 1:
        raise ValueError("replicas must be at least 1")
    hashed = key_hash(key)
    ranked = heapq.nlargest(
        replicas,
        ((_mix(hashed ^ member_hash(m)), m) for m in set(members)),
    )
    return [member for _, member in ranked]


def handoff(
    keys: Iterable[bytes],
    before: Sequence[bytes],
    after: Sequence[bytes],
    local: bytes,
    replicas: int = DEFAULT_REPLICAS,
) -> dict[bytes, list[bytes]]:
    """Which of our records must be copied to whom after the membership changed.

    For each key we hold, if we were an owner before (we have a good copy), every member
    that owns it after but did not before gets it. Only the highest-ranked surviving
    previous owner sends, so a new owner gets one copy, not ``replicas``. A key whose
    previous owners all died is pushed by whoever still has it. Returns member -> keys.
    """
    live_before = set(before)
    live_after = set(after)
    plan: dict[bytes, list[bytes]] = {}
    for key in keys:
        old = owners(key, live_before, replicas) if live_before else []
        new = owners(key, live_after, replicas) if live_after else []
        receivers = [m for m in new if m not in old and m != local]
        if not receivers:
            continue
        surviving = [m for m in old if m in live_after]
        sender = surviving[0] if surviving else local
        if sender != local:
            continue
        for member in receivers:
            plan.setdefault(member, []).append(key)
    return plan


__all__ = [
    "DEFAULT_REPLICAS",
    "handoff",
    "key_hash",
    "member_hash",
    "owners",
    "weight",
]
