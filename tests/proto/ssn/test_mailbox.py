"""Mailboxes for briefly offline peers: order, expiry, every cap, accounting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.proto.ssn.mailbox import MailboxConfig, Mailboxes, MailboxFull


def test_signals_wait_and_come_out_oldest_first() -> None:
    boxes = Mailboxes()
    boxes.put(b"bob", b"alice", b"offer", now=0.0)
    boxes.put(b"bob", b"carol", b"offer-2", now=1.0)
    assert boxes.pending(b"bob") == 2 and len(boxes) == 2 and boxes.bytes_held == 12
    taken = boxes.take(b"bob", now=2.0)
    assert [(s.sender, s.payload) for s in taken] == [(b"alice", b"offer"), (b"carol", b"offer-2")]
    assert boxes.take(b"bob", now=2.0) == [] and len(boxes) == 0 and boxes.bytes_held == 0


def test_signals_expire_after_the_ttl() -> None:
    boxes = Mailboxes(MailboxConfig(ttl=10.0))
    boxes.put(b"bob", b"a", b"1", now=0.0)
    boxes.put(b"bob", b"a", b"2", now=5.0)
    assert [s.payload for s in boxes.take(b"bob", now=10.0)] == [b"2"]
    boxes.put(b"bob", b"a", b"3", now=11.0)
    assert boxes.expire(now=21.0) == 1 and len(boxes) == 0


@pytest.mark.parametrize(
    ("config", "puts", "match"),
    [
        (MailboxConfig(per_recipient=2), [(b"bob", 10)] * 3, "recipient is full"),
        (MailboxConfig(total=2), [(b"bob", 10), (b"eve", 10), (b"dan", 10)], "space is full"),
        (MailboxConfig(total_bytes=25), [(b"bob", 10), (b"eve", 10), (b"dan", 10)], "space"),
        (MailboxConfig(max_payload=8), [(b"bob", 9)], "exceeds 8"),
    ],
)
def test_every_cap_refuses_with_a_clear_error(
    config: MailboxConfig, puts: list[tuple[bytes, int]], match: str
) -> None:
    boxes = Mailboxes(config)
    *fits, last = puts
    for recipient, size in fits:
        boxes.put(recipient, b"s", bytes(size), now=0.0)
    before = (len(boxes), boxes.bytes_held)
    with pytest.raises(MailboxFull, match=match):
        boxes.put(last[0], b"s", bytes(last[1]), now=0.0)
    assert (len(boxes), boxes.bytes_held) == before


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["put", "take", "expire"]),
            st.sampled_from([b"a", b"b", b"c"]),
            st.integers(0, 40),
            st.floats(0, 3),
        ),
        max_size=60,
    )
)
def test_counts_match_a_simple_model(operations: list[tuple[str, bytes, int, float]]) -> None:
    config = MailboxConfig(ttl=5.0, per_recipient=4, total=8, total_bytes=120)
    boxes = Mailboxes(config)
    model: dict[bytes, list[tuple[float, int]]] = {}
    now = 0.0
    for action, who, size, step in operations:
        now += step
        for key in model:
            model[key] = [(t, n) for t, n in model[key] if t + 5.0 > now]
        if action == "put":
            fits = (
                len(model.get(who, [])) < 4
                and sum(len(v) for v in model.values()) < 8
                and sum(n for v in model.values() for _, n in v) + size <= 120
            )
            try:
                boxes.put(who, b"x", bytes(size), now)
                assert fits
                model.setdefault(who, []).append((now, size))
            except MailboxFull:
                assert not fits
        elif action == "take":
            got = boxes.take(who, now)
            assert [len(s.payload) for s in got] == [n for _, n in model.pop(who, [])]
        else:
            boxes.expire(now)
        assert len(boxes) == sum(len(v) for v in model.values())
        assert boxes.bytes_held == sum(n for v in model.values() for _, n in v)
