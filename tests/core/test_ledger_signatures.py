"""Ed25519 under ZIP-215 on both backends: small-order and non-canonical points, S >= L,
torsion components, single == batch, and pure == native."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from neonet.core import backend as backend_module
from neonet.core import ledger, zip215
from neonet.core.backend import Implementation
from tests.core.ledger_chains import signing_key, torsion_signature

PURE = backend_module.implementation("pure")
NATIVE = backend_module.implementation("native")
ENCODINGS = zip215.small_order_encodings()
SMALL_ORDER_CASES = [(a, b"Zcash", r + bytes(32)) for a in ENCODINGS for r in ENCODINGS]


def test_the_small_order_encodings() -> None:
    # 8 points; 6 non-canonical encodings (y >= p, or x = 0 with the sign bit set).
    assert len(ENCODINGS) == 14
    assert len(set(ENCODINGS)) == 14
    points = {zip215.encode_point(zip215.decode_point(e)) for e in ENCODINGS}  # type: ignore[arg-type]
    assert len(points) == 8
    for encoding in points:
        point = zip215.decode_point(encoding)
        assert point is not None and zip215.is_identity(zip215.multiply(8, point))
    non_canonical = [e for e in ENCODINGS if e not in points]
    assert len(non_canonical) == 6
    assert len(SMALL_ORDER_CASES) == 196


def test_196_small_order_cases_all_verify(backend: Implementation) -> None:
    # S = 0 and small-order A and R: [8]R + [8][k]A = 0 = [8][0]B for every pair.
    singles = [backend.verify_signature(*case) for case in SMALL_ORDER_CASES]
    assert all(singles)
    assert backend.verify_signatures(SMALL_ORDER_CASES) == singles
    # libsodium refuses every one of them: the pure twin got there by its ZIP-215 path.
    for case in SMALL_ORDER_CASES[:20]:
        with pytest.raises(BadSignatureError):
            crypto_sign_open(case[2] + case[1], case[0])


def test_small_order_key_rejects_nonzero_s(backend: Implementation) -> None:
    # With A and R of small order, [8][S]B = 0 only for S = 0.
    case = (ENCODINGS[3], b"Zcash", ENCODINGS[5] + (1).to_bytes(32, "little"))
    assert backend.verify_signature(*case) is False
    assert backend.verify_signatures([case]) == [False]


def _valid(seed: int, message: bytes) -> tuple[bytes, bytes, bytes]:
    key = signing_key(seed)
    return bytes(key.verify_key), message, key.sign(message).signature


def test_valid_and_mutated_signatures(backend: Implementation) -> None:
    public_key, message, signature = _valid(1, b"hello")
    assert backend.verify_signature(public_key, message, signature)
    assert not backend.verify_signature(public_key, message + b"!", signature)
    assert not backend.verify_signature(_valid(2, b"")[0], message, signature)
    for position in (0, 17, 31, 32, 50, 63):
        mutated = bytearray(signature)
        mutated[position] ^= 0x04
        assert not backend.verify_signature(public_key, message, bytes(mutated))
    assert not backend.verify_signature(public_key[:31], message, signature)
    assert not backend.verify_signature(public_key, message, signature[:63])
    assert not backend.verify_signature(b"", b"", b"")


def test_s_must_be_below_the_group_order(backend: Implementation) -> None:
    public_key, message, signature = _valid(3, b"m")
    s = int.from_bytes(signature[32:], "little")
    assert s + zip215.L < 2**256
    congruent = signature[:32] + (s + zip215.L).to_bytes(32, "little")
    assert not backend.verify_signature(public_key, message, congruent)
    exactly_l = signature[:32] + zip215.L.to_bytes(32, "little")
    assert not backend.verify_signature(public_key, message, exactly_l)
    # S = L with small-order A and R would pass the equation; it fails only on S >= L.
    small = (ENCODINGS[0], b"Zcash", ENCODINGS[0] + zip215.L.to_bytes(32, "little"))
    assert not backend.verify_signature(*small)
    assert backend.verify_signatures([small, (public_key, message, congruent)]) == [False, False]


def test_torsion_components_verify_cofactored(backend: Implementation) -> None:
    cases = [
        torsion_signature(seed, b"torsion", key_torsion, r_torsion)
        for seed, (key_torsion, r_torsion) in enumerate([(1, 0), (0, 1), (3, 5), (7, 7), (2, 6)])
    ]
    refused_by_libsodium = 0
    for public_key, message, signature in cases:
        assert backend.verify_signature(public_key, message, signature)
        try:
            crypto_sign_open(signature + message, public_key)
        except BadSignatureError:
            refused_by_libsodium += 1
    assert refused_by_libsodium >= 3
    assert backend.verify_signatures(cases) == [True] * len(cases)


def test_libsodium_acceptance_implies_zip215() -> None:
    # The lemma the pure twin rests on, checked on valid signatures (libsodium accepts)
    # against the exact pure-integer check.
    for seed in range(5):
        public_key, message, signature = _valid(seed, bytes([seed]) * seed)
        crypto_sign_open(signature + message, public_key)
        assert zip215.verify(public_key, message, signature)


def test_batch_argument_checks(backend: Implementation) -> None:
    with pytest.raises(ValueError, match="at most 4096"):
        backend.verify_signatures([(b"", b"", b"")] * (ledger.MAX_SIGNATURES + 1))
    with pytest.raises(TypeError):
        backend.verify_signatures([[b"", b"", b""]])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        backend.verify_signatures([(b"", b"")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        backend.verify_signatures([(b"", "text", b"")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        backend.verify_signature("key", b"", b"")  # type: ignore[arg-type]
    assert backend.verify_signatures([]) == []


def test_large_batch_with_scattered_failures(backend: Implementation) -> None:
    # More than one native chunk (256), failures in some chunks only.
    key = signing_key(11)
    public_key = bytes(key.verify_key)
    items = []
    for index in range(600):
        message = index.to_bytes(4, "little")
        signature = key.sign(message).signature
        if index in (3, 300, 599):
            signature = signature[:40] + bytes([signature[40] ^ 1]) + signature[41:]
        items.append((public_key, message, signature))
    expected = [index not in (3, 300, 599) for index in range(600)]
    assert backend.verify_signatures(items) == expected


# Hypothesis: mixtures of every kind of item, the same verdicts everywhere.
_VALID = [_valid(seed, hashlib.sha256(bytes([seed])).digest()) for seed in range(6)]
_TORSION = [torsion_signature(seed, b"t", seed % 8, (seed * 3) % 8) for seed in range(4)]


@st.composite
def items(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    source = draw(st.sampled_from(["valid", "small", "torsion", "random", "mutated", "high-s"]))
    if source == "valid":
        return draw(st.sampled_from(_VALID))
    if source == "small":
        return draw(st.sampled_from(SMALL_ORDER_CASES))
    if source == "torsion":
        return draw(st.sampled_from(_TORSION))
    if source == "random":
        return (
            draw(st.binary(min_size=31, max_size=33)),
            draw(st.binary(max_size=8)),
            draw(st.binary(min_size=63, max_size=65)),
        )
    public_key, message, signature = draw(st.sampled_from(_VALID + _TORSION + SMALL_ORDER_CASES))
    if source == "high-s":
        s = int.from_bytes(signature[32:], "little") + zip215.L * draw(st.integers(1, 15))
        return public_key, message, signature[:32] + (s % 2**256).to_bytes(32, "little")
    position = draw(st.integers(min_value=0, max_value=95))
    flip = 1 << draw(st.integers(min_value=0, max_value=7))
    data = bytearray(public_key + signature)
    data[position] ^= flip
    return bytes(data[:32]), message, bytes(data[32:])


@settings(max_examples=60, deadline=None)
@given(st.lists(items(), max_size=12))
def test_single_equals_batch_and_pure_equals_native(batch: list) -> None:
    pure_single = [PURE.verify_signature(*item) for item in batch]
    native_single = [NATIVE.verify_signature(*item) for item in batch]
    assert pure_single == native_single
    assert PURE.verify_signatures(batch) == pure_single
    assert NATIVE.verify_signatures(batch) == native_single
