from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neonet.core.errors import DecodeError
from neonet.core.varint import MAX_VARINT_VALUE, decode_uvarint, encode_uvarint, try_decode_uvarint


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (16384, b"\x80\x80\x01"),
    ],
)
def test_spec_vectors(value: int, encoded: bytes) -> None:
    assert encode_uvarint(value) == encoded
    assert decode_uvarint(encoded) == (value, len(encoded))


@given(st.integers(min_value=0, max_value=MAX_VARINT_VALUE))
def test_round_trip(value: int) -> None:
    encoded = encode_uvarint(value)
    assert decode_uvarint(encoded + b"tail") == (value, len(encoded))


def test_non_minimal_truncated_and_overlong_are_refused() -> None:
    with pytest.raises(DecodeError, match="non-minimal"):
        decode_uvarint(b"\x80\x00")
    with pytest.raises(DecodeError, match="truncated"):
        decode_uvarint(b"\x80")
    with pytest.raises(DecodeError, match="9 bytes"):
        decode_uvarint(b"\xff" * 9 + b"\x01")
    assert try_decode_uvarint(b"\x80\x80") is None
    with pytest.raises(ValueError, match="out of range"):
        encode_uvarint(-1)


@given(st.binary(max_size=20))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        value, end = decode_uvarint(data)
    except DecodeError:
        return
    assert encode_uvarint(value) == data[:end]
