"""Canonical CBOR on both backends: vectors, refusals, limits, and differential fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neonet.core import backend as backend_module
from neonet.core import cbor
from neonet.core.backend import Implementation
from neonet.core.errors import DecodeError

PURE = backend_module.implementation("pure")
NATIVE = backend_module.implementation("native")

VECTORS: list[tuple[Any, str]] = [
    (0, "00"),
    (23, "17"),
    (24, "1818"),
    (255, "18ff"),
    (256, "190100"),
    (65535, "19ffff"),
    (65536, "1a00010000"),
    (2**32 - 1, "1affffffff"),
    (2**32, "1b0000000100000000"),
    (2**64 - 1, "1bffffffffffffffff"),
    (-1, "20"),
    (-24, "37"),
    (-25, "3818"),
    (-(2**64), "3bffffffffffffffff"),
    (b"", "40"),
    (b"\x01\x02\x03", "43010203"),
    (bytes(24), "5818" + "00" * 24),
    ("", "60"),
    ("ü", "62c3bc"),
    ([], "80"),
    ([1, [2, 3]], "8201820203"),
    (list(range(25)), "9819" + "".join(f"{n:02x}" if n < 24 else f"18{n:02x}" for n in range(25))),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
]


@pytest.mark.parametrize(("value", "hex_encoding"), VECTORS)
def test_known_vectors(backend: Implementation, value: Any, hex_encoding: str) -> None:
    encoded = bytes.fromhex(hex_encoding)
    assert backend.cbor_encode(value) == encoded
    decoded = backend.cbor_decode(encoded)
    assert decoded == value
    assert type(decoded) is type(value)


def test_tuples_encode_as_arrays(backend: Implementation) -> None:
    assert backend.cbor_encode((1, (b"x",))) == backend.cbor_encode([1, [b"x"]])
    assert backend.cbor_decode(backend.cbor_encode((1, 2))) == [1, 2]


REFUSED = [
    "",  # nothing at all
    "1801",  # 1 in a two-byte head
    "190017",
    "1a000000ff",
    "1b00000000ffffffff",
    "3800",  # -1 in a two-byte head
    "5801ff",  # byte-string length not shortest
    "780161",  # text length not shortest
    "9801" + "00",  # array length not shortest
    "9f01ff",  # indefinite array
    "5f4101ff",  # indefinite bytes
    "7f6161ff",  # indefinite text
    "a0",  # empty map
    "a10102",  # map
    "c24101",  # bignum tag for 1
    "c249010000000000000000",  # bignum 2**64
    "c349010000000000000000",  # negative bignum
    "d82a4100",  # tag 42
    "c0746161616161616161616161616161616161616161",  # datetime tag
    "f7",  # undefined
    "f0",  # simple(16)
    "f814",  # false in a two-byte head
    "f820",  # simple(32)
    "f93c00",  # half float 1.0
    "fa3f800000",  # single float
    "fb3ff0000000000000",  # double float
    "1c",  # reserved additional information
    "ff",  # a lone break
    "0000",  # trailing bytes
    "8100" + "00",  # trailing bytes after an array
    "62ff",  # truncated text
    "43",  # truncated bytes
    "82",  # truncated array
    "1b00",  # truncated head
    "62fffe",  # invalid UTF-8
    "63eda080",  # an encoded UTF-16 surrogate
    "62c0af",  # overlong UTF-8
    "9bffffffffffffffff",  # absurd array length
    "5b0000000100000000",  # absurd byte-string length
    "7b7fffffffffffffff",  # absurd text length
]


@pytest.mark.parametrize("hex_encoding", REFUSED)
def test_refuses_everything_outside_the_subset(backend: Implementation, hex_encoding: str) -> None:
    with pytest.raises(DecodeError):
        backend.cbor_decode(bytes.fromhex(hex_encoding))


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_depth_limit(backend: Implementation) -> None:
    deepest = _nested(cbor.MAX_DEPTH)
    encoded = backend.cbor_encode(deepest)
    assert encoded == b"\x81" * cbor.MAX_DEPTH + b"\x00"
    assert backend.cbor_decode(encoded) == deepest
    with pytest.raises(ValueError, match="nested deeper than 32"):
        backend.cbor_encode(_nested(cbor.MAX_DEPTH + 1))
    with pytest.raises(DecodeError):
        backend.cbor_decode(b"\x81" * (cbor.MAX_DEPTH + 1) + b"\x00")
    with pytest.raises(DecodeError):
        backend.cbor_decode(b"\x81" * 100_000 + b"\x00")


def test_self_referencing_list_is_refused(backend: Implementation) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nested deeper"):
        backend.cbor_encode(loop)


def test_size_limit(backend: Implementation) -> None:
    largest = bytes(cbor.MAX_SIZE - 5)  # 5-byte head
    encoded = backend.cbor_encode(largest)
    assert len(encoded) == cbor.MAX_SIZE
    assert backend.cbor_decode(encoded) == largest
    with pytest.raises(ValueError, match="exceeds 1048576"):
        backend.cbor_encode(bytes(cbor.MAX_SIZE - 4))
    with pytest.raises(DecodeError):
        backend.cbor_decode(b"\x5a\x00\x10\x00\x00" + bytes(cbor.MAX_SIZE))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2**64, "outside the 64-bit"),
        (-(2**64) - 1, "outside the 64-bit"),
        (1.5, "cannot encode float"),
        ({}, "cannot encode dict"),
        ({1}, "cannot encode set"),
        (bytearray(b"x"), "cannot encode bytearray"),
        ([1, [2, object()]], "cannot encode object"),
        ("\ud800", "lone surrogate"),
    ],
)
def test_encode_refusals(backend: Implementation, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backend.cbor_encode(value)


def test_decode_takes_bytes_only(backend: Implementation) -> None:
    with pytest.raises(TypeError):
        backend.cbor_decode(bytearray(b"\x00"))  # type: ignore[arg-type]


def test_integer_subclasses_encode_as_integers(backend: Implementation) -> None:
    from neonet.core.ledger import BlockKind

    assert backend.cbor_encode([BlockKind.ROTATE_KEY, True]) == bytes.fromhex("8206f5")


def _outcome(function: Any, argument: Any) -> tuple[str, Any]:
    try:
        return ("ok", function(argument))
    except DecodeError:
        return ("DecodeError", None)
    except ValueError as exc:
        return ("ValueError", str(exc))


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6),
    max_leaves=30,
)


@given(values)
def test_backends_encode_alike_and_round_trip(value: Any) -> None:
    encoded = PURE.cbor_encode(value)
    assert NATIVE.cbor_encode(value) == encoded
    assert PURE.cbor_decode(encoded) == value
    assert NATIVE.cbor_decode(encoded) == value


anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.binary(max_size=8)
    | st.text(max_size=8)
    | st.builds(bytearray, st.binary(max_size=4)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=2), children, max_size=2)
    ),
    max_leaves=12,
)


@given(anything)
def test_backends_refuse_the_same_values(value: Any) -> None:
    assert _outcome(PURE.cbor_encode, value) == _outcome(NATIVE.cbor_encode, value)


@st.composite
def near_canonical(draw: st.DrawFn) -> bytes:
    """Canonical encodings with a few bytes changed, inserted, removed or appended."""
    data = bytearray(PURE.cbor_encode(draw(values)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        position = draw(st.integers(min_value=0, max_value=len(data)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        byte = draw(st.integers(min_value=0, max_value=255))
        if action == "replace" and position < len(data):
            data[position] = byte
        elif action == "insert":
            data.insert(position, byte)
        elif action == "delete" and position < len(data):
            del data[position]
        elif action == "truncate":
            del data[position:]
    return bytes(data)


@given(st.binary(max_size=64) | near_canonical())
def test_backends_accept_and_refuse_the_same_bytes(data: bytes) -> None:
    pure = _outcome(PURE.cbor_decode, data)
    native = _outcome(NATIVE.cbor_decode, data)
    assert pure == native
    if pure[0] == "ok":
        # Whatever is accepted re-encodes to exactly the input.
        assert PURE.cbor_encode(pure[1]) == data
