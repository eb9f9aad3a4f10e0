"""Canonical CBOR: the one encoding NeoNet signs and hashes (ARCHITECTURE.md, decision 2).

The subset is RFC 8949 §4.2.1 ("core deterministic encoding") restricted further:
integers in ``-2**64 .. 2**64 - 1`` (major types 0 and 1), ``bytes``, ``str`` (UTF-8),
arrays (``list``; ``tuple`` is encoded as an array too), ``True``, ``False`` and
``None``. Heads are in their shortest form and lengths definite; maps, tags, floats,
other simple values and indefinite lengths are refused, and so is anything after the
value. A decoder that accepts bytes guarantees they re-encode to exactly those bytes.
Input and output are at most ``MAX_SIZE`` bytes and arrays nest at most ``MAX_DEPTH``
deep (a top-level array is depth 1).

This is the pure twin of ``neonet_core::ledger::cbor`` (Rust). Both accept and refuse
the same byte strings (``DecodeError``; the wording of the message may differ, as cbor2
finds some faults itself) and refuse the same values to encode (``ValueError``, same
message). Decoding uses cbor2 (C) and then checks that the value lies in the subset and
re-encodes to the input, which catches every non-canonical form at once.
"""

from __future__ import annotations

from typing import TypeAlias

import cbor2

from neonet.core.errors import DecodeError

MAX_SIZE = 1 << 20
MAX_DEPTH = 32

Value: TypeAlias = "int | bytes | str | bool | list[Value] | None"
"""What ``decode`` returns (``encode`` also takes tuples for arrays)."""

_INTEGER_LIMIT = 1 << 64


def encode(value: object) -> bytes:
    """Encode ``value`` canonically; ``ValueError`` if it is outside the subset or too big."""
    _check_encodable(value, 0)
    encoded = cbor2.dumps(value)
    if len(encoded) > MAX_SIZE:
        raise ValueError(f"encoded CBOR exceeds {MAX_SIZE} bytes")
    return encoded


def _check_encodable(value: object, depth: int) -> None:
    # Same order of checks as the Rust glue, so both report the same first problem.
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -_INTEGER_LIMIT <= value < _INTEGER_LIMIT:
            raise ValueError("integer outside the 64-bit CBOR range")
        return
    if isinstance(value, bytes):
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text is not valid Unicode (lone surrogate)") from None
        return
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            raise ValueError(f"CBOR arrays nested deeper than {MAX_DEPTH}")
        for item in value:
            _check_encodable(item, depth + 1)
        return
    if value is None:
        return
    raise ValueError(f"cannot encode {type(value).__name__} as canonical CBOR")


def decode(data: bytes) -> Value:
    """Decode one canonical value spanning all of ``data``; ``DecodeError`` on anything else."""
    if not isinstance(data, bytes):
        raise TypeError("data must be bytes")
    if len(data) > MAX_SIZE:
        raise DecodeError(f"CBOR input of {len(data)} bytes exceeds {MAX_SIZE}")
    value = loads_or_raise(data)
    _check_decoded(value, 0)
    if cbor2.dumps(value) != data:
        raise DecodeError("not canonical CBOR (non-shortest head, tag or trailing bytes)")
    return value


def loads_or_raise(data: bytes) -> Value:
    """cbor2's decoding with every failure turned into ``DecodeError`` (no subset checks)."""
    try:
        # cbor2 also runs decoders for semantic tags (dates, fractions, ...), which may
        # fail in their own ways; whatever it raises, the input is not ours.
        return cbor2.loads(data, max_depth=MAX_DEPTH + 1, allow_indefinite=False)  # type: ignore[no-any-return]
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise DecodeError(f"invalid CBOR: {exc}") from None


def _check_decoded(value: object, depth: int) -> None:
    kind = type(value)
    if kind is int:
        if not -_INTEGER_LIMIT <= value < _INTEGER_LIMIT:  # type: ignore[operator]
            raise DecodeError("CBOR integer outside 64 bits")
    elif kind is list:
        if depth >= MAX_DEPTH:
            raise DecodeError(f"CBOR arrays nested deeper than {MAX_DEPTH}")
        for item in value:  # type: ignore[attr-defined]
            _check_decoded(item, depth + 1)
    elif kind not in (bytes, str, bool) and value is not None:
        raise DecodeError(f"CBOR {kind.__name__} is outside the canonical subset")
