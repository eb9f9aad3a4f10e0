from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from neonet.core.errors import DecodeError
from neonet.core.keys import Ed25519Identity, KeyType, PublicKey
from neonet.core.peer_id import PeerId

# libp2p/specs peer-ids test vector: an Ed25519 public key protobuf.
SPEC_ED25519_PUBLIC = bytes.fromhex(
    "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)


def test_spec_vector_decodes_and_reencodes() -> None:
    key = PublicKey.from_protobuf(SPEC_ED25519_PUBLIC)
    assert key.key_type is KeyType.ED25519
    assert key.to_protobuf() == SPEC_ED25519_PUBLIC
    peer = PeerId.from_public_key(key)
    assert peer.multihash[:2] == b"\x00\x24"  # identity multihash of the 36-byte protobuf
    assert str(peer).startswith("12D3KooW")
    assert peer.extract_public_key() == key


def test_identity_round_trips_through_private_protobuf() -> None:
    identity = Ed25519Identity.from_seed(bytes(range(32)))
    restored = Ed25519Identity.from_private_protobuf(identity.to_private_protobuf())
    assert restored.public_key == identity.public_key
    signature = identity.sign(b"message")
    assert identity.public_key.verify(signature, b"message")
    assert not identity.public_key.verify(signature, b"other")
    assert not identity.public_key.verify(b"short", b"message")


def test_peer_id_text_forms() -> None:
    peer = PeerId.from_public_key(Ed25519Identity.generate().public_key)
    assert PeerId.from_string(str(peer)) == peer
    assert PeerId.from_string(peer.to_cid()) == peer
    assert peer.to_cid().startswith("bafz")
    assert hash(PeerId.from_string(str(peer))) == hash(peer)


def test_secp256k1_keys_verify_and_hash_to_sha256_peer_ids() -> None:
    private = ec.generate_private_key(ec.SECP256K1())
    compressed = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    key = PublicKey(KeyType.SECP256K1, compressed)
    signature = private.sign(b"hello", ec.ECDSA(hashes.SHA256()))
    assert key.verify(signature, b"hello")
    assert not key.verify(signature, b"hullo")
    assert PeerId.from_public_key(key).multihash[0] == 0x00  # 37 bytes: still inlined


def test_malformed_keys_and_ids_raise_decode_error() -> None:
    with pytest.raises(DecodeError):
        PublicKey.from_protobuf(b"\x08\x01\x12\x03abc")  # Ed25519 key of 3 bytes
    with pytest.raises(DecodeError):
        PublicKey.from_protobuf(b"\x08\x09\x12\x00")  # unknown key type
    with pytest.raises(DecodeError):
        PeerId(b"\x13\x02ab")  # unsupported hash code
    with pytest.raises(DecodeError):
        PeerId.from_string("bafyNotACid")


@given(st.binary(max_size=100))
def test_fuzz_public_key_decoder(data: bytes) -> None:
    try:
        key = PublicKey.from_protobuf(data)
    except DecodeError:
        return
    assert key.to_protobuf() == data


@given(st.binary(max_size=80))
def test_fuzz_peer_id_decoder(data: bytes) -> None:
    try:
        peer = PeerId(data)
    except DecodeError:
        return
    assert PeerId.from_string(str(peer)) == peer


@given(st.text(max_size=80))
def test_fuzz_peer_id_text(text: str) -> None:
    with contextlib.suppress(DecodeError):
        PeerId.from_string(text)


# RFC 8032, section 7.1, TEST 1 (the empty message).
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_identity_signs_the_rfc8032_vector() -> None:
    ident = Ed25519Identity.from_seed(RFC8032_SEED)
    assert ident.public_key.data == RFC8032_PUBLIC
    assert ident.sign(b"") == RFC8032_SIGNATURE


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=300))
def test_identity_signs_as_openssl_does(seed: bytes, message: bytes) -> None:
    """``sign`` goes through libsodium; Ed25519 is deterministic, so the bytes must be
    exactly OpenSSL's (``cryptography``) for the same key, and verify."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    ident = Ed25519Identity.from_seed(seed)
    expected = ed25519.Ed25519PrivateKey.from_private_bytes(seed).sign(message)
    assert ident.sign(message) == expected
    assert ident.public_key.verify(expected, message)
    assert ident.sign(bytearray(message)) == expected
