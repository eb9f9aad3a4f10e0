"""Rendezvous placement of SSN records: R owners, balance, minimal movement, handoff."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.proto.ssn.placement import handoff, owners, weight

MEMBERS = [b"ssn-%02d" % i for i in range(12)]
KEYS = [b"user-%05d" % i for i in range(6000)]


def test_owners_are_the_top_weights_and_do_not_depend_on_member_order() -> None:
    key = b"alice"
    chosen = owners(key, MEMBERS, 3)
    assert len(chosen) == 3 and len(set(chosen)) == 3
    by_weight = sorted(MEMBERS, key=lambda m: weight(key, m), reverse=True)
    assert chosen == by_weight[:3]
    assert owners(key, list(reversed(MEMBERS)), 3) == chosen
    assert owners(key, MEMBERS[:2], 3) == sorted(MEMBERS[:2], key=lambda m: -weight(key, m))


def test_load_is_balanced_across_members() -> None:
    load = Counter(m for key in KEYS for m in owners(key, MEMBERS, 3))
    expected = len(KEYS) * 3 / len(MEMBERS)
    assert sum(load.values()) == len(KEYS) * 3
    assert all(0.85 * expected < n < 1.15 * expected for n in load.values()), load


def test_a_member_dying_moves_only_its_own_keys() -> None:
    dead = MEMBERS[5]
    after = [m for m in MEMBERS if m != dead]
    moved = 0
    for key in KEYS:
        old = owners(key, MEMBERS, 3)
        new = owners(key, after, 3)
        if dead in old:
            moved += 1
            assert set(old) - {dead} < set(new)  # the survivors keep it, one new owner
        else:
            assert new == old
    assert 0.2 < moved / len(KEYS) < 0.3  # about R/N = 25%


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=40, unique=True),
    st.sets(st.integers(0, 11), max_size=6),
    st.sets(st.integers(12, 15), max_size=3),
)
def test_after_a_handoff_every_new_owner_has_every_key(
    keys: list[bytes], dying: set[int], joining: set[int]
) -> None:
    before = MEMBERS
    after = [m for i, m in enumerate(MEMBERS) if i not in dying] + [
        b"ssn-%02d" % i for i in joining
    ]
    if not after:
        return
    # Every member holds what it owned before; it runs handoff and sends the plan.
    held = {m: {k for k in keys if m in owners(k, before, 3)} for m in before}
    received: dict[bytes, list[bytes]] = {m: [] for m in after}
    for member in before:
        if member not in after:
            continue  # dead members send nothing
        for target, sent in handoff(held[member], before, after, member, 3).items():
            received[target].extend(sent)
    for key in keys:
        old_owners = owners(key, before, 3)
        if not any(m in after for m in old_owners):
            continue  # every copy died with its owners: nobody can hand it over
        for member in owners(key, after, 3):
            has = key in held.get(member, set()) or key in received[member]
            assert has, (key, member)
            # One copy per new owner, not one per old owner.
            assert received[member].count(key) <= 1


def test_replicas_must_be_positive() -> None:
    with pytest.raises(ValueError, match="replicas"):
        owners(b"k", MEMBERS, 0)
