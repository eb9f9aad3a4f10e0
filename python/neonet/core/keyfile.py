"""The identity file format: an Ed25519 identity as JSON, optionally passphrase-encrypted.

Plain: ``{"version": 1, "peer_id": ..., "private_key": base64(libp2p PrivateKey protobuf)}``.
Encrypted: the protobuf is sealed with ChaCha20-Poly1305 under a key derived from the
passphrase by scrypt (memory-hard; n=2**15, r=8, p=1 by default), the header bound as
associated data so no field can be swapped. Pure functions: the caller reads and writes.
"""

from __future__ import annotations

import base64
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from neonet.core.errors import DecodeError, NeoNetError
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId

FORMAT_VERSION = 1
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
# Refuse KDF settings from a file that would cost more than ~1 GiB of memory.
MAX_SCRYPT_MEMORY = 1024**3
MAX_FILE_BYTES = 64 * 1024


class WrongPassphraseError(NeoNetError):
    """The passphrase does not open this identity file (or the file was altered)."""


class PassphraseRequiredError(NeoNetError):
    """The identity file is encrypted and no passphrase was given."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, field: str) -> bytes:
    if not isinstance(text, str):
        raise DecodeError(f"identity file field {field!r} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise DecodeError(f"identity file field {field!r} is not valid base64") from exc


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    if (
        n < 2
        or n & (n - 1)
        or not 1 <= r <= 64
        or not 1 <= p <= 16
        or 128 * n * r * p > MAX_SCRYPT_MEMORY
    ):
        raise DecodeError("identity file has unacceptable scrypt parameters")
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def encode_keyfile(
    identity: Ed25519Identity, passphrase: str | None = None, *, scrypt_n: int = SCRYPT_N
) -> bytes:
    peer_id = str(PeerId.from_public_key(identity.public_key))
    secret = identity.to_private_protobuf()
    if passphrase is None:
        document: dict[str, object] = {
            "version": FORMAT_VERSION,
            "peer_id": peer_id,
            "private_key": _b64(secret),
        }
    else:
        salt, nonce = os.urandom(16), os.urandom(12)
        header = {
            "version": FORMAT_VERSION,
            "peer_id": peer_id,
            "kdf": {
                "name": "scrypt",
                "n": scrypt_n,
                "r": SCRYPT_R,
                "p": SCRYPT_P,
                "salt": _b64(salt),
            },
            "cipher": "chacha20-poly1305",
            "nonce": _b64(nonce),
        }
        key = _derive(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P)
        sealed = ChaCha20Poly1305(key).encrypt(nonce, secret, _associated_data(header))
        document = {**header, "ciphertext": _b64(sealed)}
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _associated_data(header: dict[str, object]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def is_encrypted(data: bytes) -> bool:
    return "ciphertext" in _load_json(data)


def _load_json(data: bytes) -> dict[str, object]:
    if len(data) > MAX_FILE_BYTES:
        raise DecodeError("identity file is too large")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"identity file is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise DecodeError(f"identity file must be a JSON object with version {FORMAT_VERSION}")
    return document


def decode_keyfile(data: bytes, passphrase: str | None = None) -> Ed25519Identity:
    """Load an identity.

    Raises ``PassphraseRequiredError``, ``WrongPassphraseError`` or ``DecodeError``.
    """
    document = _load_json(data)
    if "ciphertext" not in document:
        identity = Ed25519Identity.from_private_protobuf(
            _unb64(document.get("private_key"), "private_key")
        )
    else:
        if passphrase is None:
            raise PassphraseRequiredError("this identity file is encrypted: a passphrase is needed")
        kdf = document.get("kdf")
        if (
            not isinstance(kdf, dict)
            or kdf.get("name") != "scrypt"
            or document.get("cipher") != "chacha20-poly1305"
        ):
            raise DecodeError("identity file uses an unknown KDF or cipher")
        parameters = [kdf.get(name) for name in ("n", "r", "p")]
        if not all(isinstance(value, int) for value in parameters):
            raise DecodeError("identity file scrypt parameters must be integers")
        n, r, p = (int(str(value)) for value in parameters)
        key = _derive(passphrase, _unb64(kdf.get("salt"), "salt"), n, r, p)
        header = {name: value for name, value in document.items() if name != "ciphertext"}
        try:
            secret = ChaCha20Poly1305(key).decrypt(
                _unb64(document.get("nonce"), "nonce"),
                _unb64(document.get("ciphertext"), "ciphertext"),
                _associated_data(header),
            )
        except (InvalidTag, ValueError) as exc:
            raise WrongPassphraseError(
                "wrong passphrase, or the identity file was altered"
            ) from exc
        identity = Ed25519Identity.from_private_protobuf(secret)
    if document.get("peer_id") != str(PeerId.from_public_key(identity.public_key)):
        raise DecodeError("identity file peer_id does not match its key")
    return identity
