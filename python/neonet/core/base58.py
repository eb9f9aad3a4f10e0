"""Pure-Python base58btc (the Bitcoin alphabet), the twin of the native codec.

Peer IDs are printed in base58btc. The native backend does the same in Rust; tests run
both through the same cases (see ``neonet.core.backend``).
"""

from __future__ import annotations

from neonet.core.errors import DecodeError

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {char: value for value, char in enumerate(ALPHABET)}
# Longer inputs are refused so that a hostile string cannot cost quadratic time.
MAX_BASE58_INPUT = 1024


def encode(data: bytes) -> str:
    if len(data) > MAX_BASE58_INPUT:
        raise ValueError(f"base58 input longer than {MAX_BASE58_INPUT} bytes")
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(ALPHABET[remainder])
    return "1" * zeros + "".join(reversed(digits))


def decode(text: str) -> bytes:
    if len(text) > MAX_BASE58_INPUT * 2:
        raise DecodeError(f"base58 text longer than {MAX_BASE58_INPUT * 2} characters")
    zeros = len(text) - len(text.lstrip("1"))
    number = 0
    for position, char in enumerate(text):
        value = _INDEX.get(char)
        if value is None:
            raise DecodeError(f"invalid base58 character U+{ord(char):04X} at position {position}")
        number = number * 58 + value
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body
