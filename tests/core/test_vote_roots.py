"""``vote_roots`` (the ledger core's batch-vote fold, docs/bank.md "Batch votes"): the Rust
twin and the pure one give the same messages and roots, and the same errors."""

from __future__ import annotations

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core import backend
from neonet.core.ledger import VOTE_CONTEXT, VOTE_TREE_CONTEXT, hash_block_body
from neonet.proto.bank.votes import vote_tree

PURE = backend.implementation("pure")
TWINS = [PURE] + ([backend.implementation("native")] if backend.NATIVE_AVAILABLE else [])

PATHS = st.lists(
    st.tuples(
        st.integers(0, (1 << 16) - 1),
        st.integers(0, 16).flatmap(lambda n: st.binary(min_size=32 * n, max_size=32 * n)),
    ),
    max_size=5,
)


@pytest.mark.skipif(not backend.NATIVE_AVAILABLE, reason="the native module is not built")
@settings(max_examples=300, deadline=None)
@given(committee=st.binary(min_size=32, max_size=32), body=st.binary(max_size=300), paths=PATHS)
def test_twins_agree(committee: bytes, body: bytes, paths: list[tuple[int, bytes]]) -> None:
    pure, native = (twin.vote_roots(committee, body, paths) for twin in TWINS)
    assert pure == native
    leaf, roots = pure
    assert (
        leaf
        == blake3.blake3(
            committee + hash_block_body(body), derive_key_context=VOTE_CONTEXT
        ).digest()
    )
    assert len(roots) == len(paths)
    assert all(root == leaf for root, (_, path) in zip(roots, paths, strict=True) if not path)


@pytest.mark.parametrize("twin", TWINS, ids=lambda twin: twin.name)
def test_roots_of_a_tree(twin: backend.Implementation) -> None:
    committee = bytes(range(32))
    bodies = [bytes([i]) * (40 + i) for i in range(11)]
    leaves = [twin.vote_roots(committee, body, [])[0] for body in bodies]
    root, paths = vote_tree(leaves)
    for body, leaf, path in zip(bodies, leaves, paths, strict=True):
        assert twin.vote_roots(committee, body, [path, (0, b"")]) == (leaf, [root, leaf])
    # An inner node is the tree context's derive-key over left || right.
    pair = leaves[0] + leaves[1]
    assert twin.vote_roots(committee, bodies[0], [(0, leaves[1])])[1] == [
        blake3.blake3(pair, derive_key_context=VOTE_TREE_CONTEXT).digest()
    ]


@pytest.mark.parametrize("twin", TWINS, ids=lambda twin: twin.name)
@pytest.mark.parametrize("path", [bytes(31), bytes(33), bytes(32 * 17)])
def test_bad_paths_are_refused(twin: backend.Implementation, path: bytes) -> None:
    with pytest.raises(ValueError, match="a vote path is at most 16 nodes of 32 bytes"):
        twin.vote_roots(bytes(32), b"body", [(0, path)])


@pytest.mark.parametrize("twin", TWINS, ids=lambda twin: twin.name)
@pytest.mark.parametrize("sides", [-1, 1 << 64])
def test_sides_beyond_64_bits_are_refused(twin: backend.Implementation, sides: int) -> None:
    with pytest.raises(OverflowError):
        twin.vote_roots(bytes(32), b"body", [(sides, bytes(32))])


BAD_ARGUMENTS = [
    # (committee_id, body, paths, error) the Rust twin's conversions raise
    (bytes(32), b"body", [(1.0, bytes(32))], TypeError),
    (bytes(32), b"body", [(0, "x" * 32)], TypeError),
    (bytes(32), b"body", [(0, [0] * 32)], TypeError),
    (bytes(32), b"body", [(0, memoryview(bytes(32)))], TypeError),
    (bytes(32), b"body", [[0, bytes(32)]], TypeError),
    (bytes(32), b"body", [(0, bytes(32), 1)], ValueError),
    (bytearray(32), b"body", [], TypeError),
    (bytes(32), bytearray(b"body"), [], TypeError),
    (bytes(32), b"body", "ab", TypeError),
    (bytes(32), b"body", b"ab", TypeError),
    (bytes(32), b"body", None, TypeError),
    # Every item is checked before any is folded: the second item's error wins.
    (bytes(32), b"body", [(0, bytes(31)), (-1, b"")], OverflowError),
    (bytes(32), b"body", [(0, bytes(31)), (0.5, b"")], TypeError),
    (bytes(32), b"body", [(0, bytes(33)), (0, "x")], TypeError),
]


@pytest.mark.parametrize("twin", TWINS, ids=lambda twin: twin.name)
@pytest.mark.parametrize(
    ("committee", "body", "paths", "error"), BAD_ARGUMENTS, ids=[str(i) for i in range(14)]
)
def test_twins_refuse_bad_arguments_alike(
    twin: backend.Implementation,
    committee: object,
    body: object,
    paths: object,
    error: type[Exception],
) -> None:
    with pytest.raises(error) as raised:
        twin.vote_roots(committee, body, paths)  # type: ignore[arg-type]
    assert type(raised.value) is error  # not a subclass: the twins raise the same type


@pytest.mark.parametrize("twin", TWINS, ids=lambda twin: twin.name)
def test_twins_take_bool_sides_and_bytearray_paths_alike(twin: backend.Implementation) -> None:
    committee, body = bytes(32), b"body"
    expected = twin.vote_roots(committee, body, [(1, bytes(32))])
    assert twin.vote_roots(committee, body, [(True, bytearray(32))]) == expected
    assert twin.vote_roots(committee, body, ((1, bytes(32)),)) == expected


JUNK = st.one_of(
    st.integers(-2, (1 << 64) + 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.binary(max_size=40),
    st.binary(max_size=40).map(bytearray),
    st.text(max_size=3),
    st.none(),
)
ITEMS = st.one_of(
    st.tuples(JUNK, JUNK),
    st.tuples(st.integers(0, 3), st.sampled_from([b"", bytes(32), bytes(31)])),
    st.lists(JUNK, max_size=3),
    st.tuples(JUNK, JUNK, JUNK),
    JUNK,
)


def _outcome(twin: backend.Implementation, paths: object) -> object:
    try:
        return twin.vote_roots(bytes(32), b"body", paths)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError) as exc:
        return type(exc)


@pytest.mark.skipif(not backend.NATIVE_AVAILABLE, reason="the native module is not built")
@settings(max_examples=400, deadline=None)
@given(paths=st.one_of(st.lists(ITEMS, max_size=4), JUNK))
def test_twins_agree_on_junk(paths: object) -> None:
    pure, native = (_outcome(twin, paths) for twin in TWINS)
    assert pure == native


# ``vote_tree`` (the batch's tree; session 7: in the Rust core, with the pure twin) ------

LEAVES = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70)


@pytest.mark.skipif(not backend.NATIVE_AVAILABLE, reason="the native module is not built")
@settings(max_examples=200, deadline=None)
@given(leaves=LEAVES)
def test_vote_tree_twins_agree_and_every_path_folds_to_the_root(leaves: list[bytes]) -> None:
    pure, native = (twin.vote_tree(leaves, True) for twin in TWINS)
    assert pure == native
    root, paths = pure
    assert len(paths) == len(leaves)
    assert all(twin.vote_tree(leaves, False) == (root, []) for twin in TWINS)
    for leaf, (sides, path) in zip(leaves, paths, strict=True):
        assert len(path) <= 32 * 7  # ceil(log2(70)) siblings at most
        # The fold of each leaf's path (vote_roots' own rule) reaches the root.
        node = leaf
        for k in range(0, len(path), 32):
            sibling = path[k : k + 32]
            pair = sibling + node if sides >> (k // 32) & 1 else node + sibling
            node = blake3.blake3(pair, derive_key_context=VOTE_TREE_CONTEXT).digest()
        assert node == root


@pytest.mark.parametrize("twin", TWINS, ids=lambda twin: twin.name)
def test_vote_tree_of_one_two_and_three_leaves(twin: backend.Implementation) -> None:
    a, b, c = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
    assert twin.vote_tree([a], True) == (a, [(0, b"")])  # a direct vote
    ab = blake3.blake3(a + b, derive_key_context=VOTE_TREE_CONTEXT).digest()
    assert twin.vote_tree([a, bytearray(b)], True) == (ab, [(0, b), (1, a)])
    abc = blake3.blake3(ab + c, derive_key_context=VOTE_TREE_CONTEXT).digest()
    # The odd last leaf moves up unchanged: its path is the one node beside it above.
    assert twin.vote_tree([a, b, c], True) == (abc, [(0, b + c), (1, a + c), (1, ab)])


@pytest.mark.parametrize("twin", TWINS, ids=lambda twin: twin.name)
@pytest.mark.parametrize(
    ("leaves", "error"),
    [
        ([], ValueError),
        ([bytes(31)], ValueError),
        ([bytes(32), bytes(33)], ValueError),
        ([bytes(32)] * ((1 << 16) + 1), ValueError),
        ([bytes(32), "x" * 32], TypeError),
        ([bytes(32), 7], TypeError),
        ("x" * 32, TypeError),
        (bytes(32), TypeError),
        (None, TypeError),
    ],
    ids=["none", "short", "long", "too-many", "str-leaf", "int-leaf", "str", "bytes", "None"],
)
def test_vote_tree_bad_arguments(
    twin: backend.Implementation, leaves: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        twin.vote_tree(leaves, True)  # type: ignore[arg-type]
