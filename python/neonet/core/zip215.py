"""Ed25519 verification under the ZIP-215 rules, in plain Python integers (slow, exact).

ZIP-215 (https://zips.z.cash/zip-0215) defines a valid signature ``(R_bytes, S_bytes)``
by public key ``A_bytes`` on message ``M`` as:

- ``S`` (little-endian) is canonical: ``S < L``;
- ``A_bytes`` and ``R_bytes`` decode to curve points, where non-canonical encodings
  (``y >= p``; ``x = 0`` with the sign bit set) are accepted and small-order points too;
- ``[8][S]B == [8]R + [8][k]A`` with ``k = SHA-512(R_bytes || A_bytes || M) mod L``.

``neonet.core.ledger`` calls this only for signatures that libsodium rejects (libsodium
is stricter, see that module), so its cost (a few milliseconds) is paid for invalid or
unusual signatures only. It also serves the tests, which build the small-order points.
Arithmetic is in extended twisted Edwards coordinates (Hisil-Wong-Carter-Dawson 2008).
"""

from __future__ import annotations

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P
SQRT_MINUS_ONE = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]
"""Extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z."""

IDENTITY: Point = (0, 1, 1, 0)


def _recover_x(y: int, sign: int) -> int | None:
    # x^2 = (y^2 - 1) / (d y^2 + 1); the denominator never vanishes because d is not a square.
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    check = v * x * x % P
    if check == (-u) % P:
        x = x * SQRT_MINUS_ONE % P
    elif check != u:
        return None
    if x & 1 != sign:
        x = (-x) % P  # for x = 0 this is 0 again: the sign bit is then simply ignored
    return x


def decode_point(encoding: bytes) -> Point | None:
    """Decode 32 bytes to a point the ZIP-215 way (non-canonical y accepted), or None."""
    if len(encoding) != 32:
        return None
    number = int.from_bytes(encoding, "little")
    y = (number & ((1 << 255) - 1)) % P
    x = _recover_x(y, number >> 255)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def encode_point(point: Point) -> bytes:
    """The canonical 32-byte encoding of a point."""
    x_coordinate, y_coordinate, z_coordinate, _ = point
    inverse = pow(z_coordinate, -1, P)
    x = x_coordinate * inverse % P
    y = y_coordinate * inverse % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def add(first: Point, second: Point) -> Point:
    """Point addition (complete for twisted Edwards curves with a = -1)."""
    x1, y1, z1, t1 = first
    x2, y2, z2, t2 = second
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def double(point: Point) -> Point:
    """Point doubling."""
    x1, y1, z1, _ = point
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    h = a + b
    e = h - (x1 + y1) * (x1 + y1)
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def negate(point: Point) -> Point:
    """The point -P."""
    x, y, z, t = point
    return ((-x) % P, y, z, (-t) % P)


def multiply(scalar: int, point: Point) -> Point:
    """[scalar]point by double-and-add (variable time: only public values here)."""
    result = IDENTITY
    for bit in bin(scalar)[2:] if scalar > 0 else ():
        result = double(result)
        if bit == "1":
            result = add(result, point)
    return result


def is_identity(point: Point) -> bool:
    """Whether the point is the neutral element (0, 1)."""
    x, y, z, _ = point
    return x % P == 0 and (y - z) % P == 0


def _base_point() -> Point:
    # RFC 8032 §5.1: B has y = 4/5 and an even ("positive") x.
    point = decode_point((4 * pow(5, -1, P) % P).to_bytes(32, "little"))
    if point is None:
        raise AssertionError("the Ed25519 base point must decode")
    return point


BASE = _base_point()


def _double_multiply(first_scalar: int, first: Point, second_scalar: int, second: Point) -> Point:
    # Shamir's trick: one doubling chain for both products.
    both = add(first, second)
    result = IDENTITY
    for position in range(max(first_scalar.bit_length(), second_scalar.bit_length()) - 1, -1, -1):
        result = double(result)
        first_bit = (first_scalar >> position) & 1
        second_bit = (second_scalar >> position) & 1
        if first_bit and second_bit:
            result = add(result, both)
        elif first_bit:
            result = add(result, first)
        elif second_bit:
            result = add(result, second)
    return result


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` by ``public_key`` on ``message`` is valid under ZIP-215."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    a = decode_point(public_key)
    r = decode_point(signature[:32])
    if a is None or r is None:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % L
    # [S]B - [k]A - R, times the cofactor 8, must be the identity.
    difference = add(_double_multiply(s, BASE, k, negate(a)), negate(r))
    return is_identity(double(double(double(difference))))


def small_order_points() -> list[Point]:
    """The 8 points of order dividing 8, found from the curve itself (for tests).

    [L]P kills the prime-order part of any point P; the first P whose image has order
    8 generates the torsion subgroup, listed as [0]T, [1]T, ..., [7]T.
    """
    y = 2
    while True:
        candidate = decode_point(y.to_bytes(32, "little"))
        if candidate is not None:
            torsion = multiply(L, candidate)
            if not is_identity(multiply(4, torsion)):
                points = [IDENTITY]
                for _ in range(7):
                    points.append(add(points[-1], torsion))
                return points
        y += 1


def small_order_encodings() -> list[bytes]:
    """Every 32-byte encoding, canonical or not, of a small-order point (14 in all).

    Canonical: 8. Non-canonical: ``y + p`` where it still fits in 255 bits (y = 0, 1),
    and the sign bit set where x = 0 (y = 1, -1, and p + 1), 6 in all.
    """
    encodings: list[bytes] = []
    for point in small_order_points():
        canonical = encode_point(point)
        y = int.from_bytes(canonical, "little") & ((1 << 255) - 1)
        candidates = [y, y + P] if y + P < (1 << 255) else [y]
        for candidate_y in candidates:
            for sign in (0, 1):
                encoding = (candidate_y | (sign << 255)).to_bytes(32, "little")
                decoded = decode_point(encoding)
                if (
                    decoded is not None
                    and encode_point(decoded) == canonical
                    and encoding not in encodings
                ):
                    encodings.append(encoding)
    return encodings
