"""The backend switch and the base58btc codec on both backends (pure twin vs Rust)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neonet.core import backend as backend_module
from neonet.core.backend import Implementation
from neonet.core.errors import DecodeError

VECTORS = [
    (b"", ""),
    (b"hello world", "StV1DL6CwTryKyV"),
    (b"\0\0\x01", "112"),
    (b"\0", "1"),
    (
        bytes.fromhex(
            "00240801122051a5b3e5b2b4ec1bde5ba0ac7dc1ce1c1f8cbd39ee6f1ab7b76a3cbd4c4b5b1e"
        ),
        None,
    ),
]


@pytest.mark.parametrize(("data", "text"), VECTORS)
def test_known_vectors(backend: Implementation, data: bytes, text: str | None) -> None:
    encoded = backend.base58btc_encode(data)
    if text is not None:
        assert encoded == text
    assert backend.base58btc_decode(encoded) == data


@pytest.mark.parametrize("bad", ["0", "O", "I", "l", "abc!", "é", "\n"])
def test_bad_characters_raise_decode_error(backend: Implementation, bad: str) -> None:
    with pytest.raises(DecodeError, match="invalid base58 character"):
        backend.base58btc_decode(bad)


def test_oversize_input_refused(backend: Implementation) -> None:
    with pytest.raises(ValueError, match="longer than 1024"):
        backend.base58btc_encode(b"\x01" * 1025)
    with pytest.raises(DecodeError, match="longer than 2048"):
        backend.base58btc_decode("2" * 2049)


@given(st.binary(max_size=200))
def test_backends_agree_on_encoding(data: bytes) -> None:
    pure = backend_module.implementation("pure")
    native = backend_module.implementation("native")
    assert pure.base58btc_encode(data) == native.base58btc_encode(data)
    assert native.base58btc_decode(pure.base58btc_encode(data)) == data


@given(st.text(max_size=80))
def test_backends_agree_on_any_text(text: str) -> None:
    outcomes = []
    for name in ("pure", "native"):
        try:
            outcomes.append(("ok", backend_module.implementation(name).base58btc_decode(text)))
        except DecodeError as exc:
            outcomes.append(("error", str(exc)))
    assert outcomes[0] == outcomes[1]


def test_environment_variable_forces_pure() -> None:
    code = "from neonet.core import backend; print(backend.BACKEND)"
    environment = {**os.environ, "NEONET_PURE": "1"}
    forced = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    )
    assert forced.stdout.strip() == "pure"
    environment.pop("NEONET_PURE")
    default = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    )
    assert default.stdout.strip() == "native"
