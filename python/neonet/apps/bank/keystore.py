"""The NeoBankof keystore: account keys encrypted at rest (``docs/bank.md``, "Keys").

It reuses the identity file format of ``neonet.core.keyfile`` (scrypt, memory-hard, and
ChaCha20-Poly1305 from ``cryptography``, header bound as associated data) and writes the
file atomically with mode 0600, so a crash leaves either the old or the new key.
"""

from __future__ import annotations

import os
from pathlib import Path

from neonet.core.keyfile import SCRYPT_N, decode_keyfile, encode_keyfile
from neonet.core.keys import Ed25519Identity


def save_key(
    path: str | Path, identity: Ed25519Identity, passphrase: str, *, scrypt_n: int = SCRYPT_N
) -> None:
    """Encrypt ``identity`` under ``passphrase`` into ``path`` (replaced atomically)."""
    if not passphrase:
        raise ValueError("the bank keystore needs a passphrase")
    data = encode_keyfile(identity, passphrase, scrypt_n=scrypt_n)
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, target)


def load_key(path: str | Path, passphrase: str) -> Ed25519Identity:
    """Decrypt the key in ``path``; ``WrongPassphraseError`` if the passphrase is wrong."""
    return decode_keyfile(Path(path).read_bytes(), passphrase)
