from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core.errors import DecodeError, NeoNetError
from neonet.core.keyfile import (
    PassphraseRequiredError,
    WrongPassphraseError,
    decode_keyfile,
    encode_keyfile,
    is_encrypted,
)
from neonet.core.keys import Ed25519Identity

FAST_N = 2**4  # tests use a cheap scrypt cost; the default is 2**15


def test_plain_round_trip() -> None:
    identity = Ed25519Identity.generate()
    data = encode_keyfile(identity)
    assert not is_encrypted(data)
    assert decode_keyfile(data).public_key == identity.public_key


def test_encrypted_round_trip_and_wrong_passphrase() -> None:
    identity = Ed25519Identity.generate()
    data = encode_keyfile(identity, "correct horse", scrypt_n=FAST_N)
    assert is_encrypted(data)
    assert identity.seed().hex() not in data.decode()
    assert decode_keyfile(data, "correct horse").public_key == identity.public_key
    with pytest.raises(WrongPassphraseError):
        decode_keyfile(data, "wrong")
    with pytest.raises(PassphraseRequiredError):
        decode_keyfile(data)


def test_tampered_header_is_detected() -> None:
    data = encode_keyfile(Ed25519Identity.generate(), "pw", scrypt_n=FAST_N)
    document = json.loads(data)
    document["peer_id"] = "12D3KooWSomethingElse"
    with pytest.raises(WrongPassphraseError):
        decode_keyfile(json.dumps(document).encode(), "pw")


def test_unreasonable_kdf_cost_is_refused() -> None:
    data = encode_keyfile(Ed25519Identity.generate(), "pw", scrypt_n=FAST_N)
    document = json.loads(data)
    document["kdf"]["n"] = 2**30
    with pytest.raises(DecodeError, match="scrypt"):
        decode_keyfile(json.dumps(document).encode(), "pw")


@settings(max_examples=50)
@given(st.binary(max_size=300))
def test_fuzz_keyfile_decoder(data: bytes) -> None:
    with contextlib.suppress(NeoNetError):
        decode_keyfile(data, "pw")
