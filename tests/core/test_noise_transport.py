"""The Noise transport phase (framing, ChaCha20-Poly1305, nonces) on both backends.

Every test runs on the pure twin and on the Rust engine (``backend`` fixture); the
Hypothesis tests at the end drive a pure and a native transport in lockstep and require
identical output bytes, plaintext and exceptions. The handshake that produces the keys
is tested in tests/proto/test_noise.py (which also checks the Noise test vectors'
transport messages on both backends).
"""

from __future__ import annotations

import array
import contextlib
import itertools

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neonet.core.backend import Implementation
from neonet.core.errors import LocalProtocolError, RemoteProtocolError
from neonet.core.noise_transport import (
    MAX_MESSAGE_SIZE,
    MAX_NONCE,
    MAX_PLAINTEXT_SIZE,
    NoiseTransportEngine,
)
from tests.core.twins import NATIVE, PURE, Twin

CLIENT_KEY = bytes(range(32))  # client -> server
SERVER_KEY = bytes(range(100, 132))  # server -> client


def pair(
    backend: Implementation, *, client_nonce: int = 0, server_nonce: int = 0
) -> tuple[NoiseTransportEngine, NoiseTransportEngine]:
    """A client and a server transport; the given nonces start the client->server direction."""
    client = backend.NoiseTransport(CLIENT_KEY, SERVER_KEY, send_nonce=client_nonce)
    server = backend.NoiseTransport(SERVER_KEY, CLIENT_KEY, receive_nonce=server_nonce)
    return client, server


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 1
    return bytes(out)


def test_transport_both_ways_with_all_buffer_types(backend: Implementation) -> None:
    client, server = pair(backend)
    assert server.receive_data(client.encrypt(b"hello")) == b"hello"
    assert client.receive_data(server.encrypt(bytearray(b"world"))) == b"world"
    assert server.receive_data(memoryview(client.encrypt(memoryview(b"view")))) == b"view"
    assert server.receive_data(bytearray(client.encrypt(b"array"))) == b"array"
    assert client.messages_sent == 3 and server.messages_received == 3


def test_ciphertext_is_chacha20_poly1305_with_the_noise_nonce(backend: Implementation) -> None:
    client, _ = pair(backend)
    client.encrypt(b"first")
    frame = client.encrypt(b"second")
    # Nonce 1 (Noise 12.3: 32 zero bits, then the counter little-endian), no AD.
    expected = ChaCha20Poly1305(CLIENT_KEY).encrypt(
        bytes(4) + (1).to_bytes(8, "little"), b"second", None
    )
    assert frame == len(expected).to_bytes(2, "big") + expected


def test_zero_length_write_sends_nothing(backend: Implementation) -> None:
    client, server = pair(backend)
    assert client.encrypt(b"") == b""
    assert client.messages_sent == 0
    assert server.receive_data(b"") == b""


def test_empty_noise_message_is_a_valid_frame(backend: Implementation) -> None:
    client, server = pair(backend)
    empty = ChaCha20Poly1305(CLIENT_KEY).encrypt(bytes(12), b"", None)
    assert len(empty) == 16
    assert server.receive_data(b"\x00\x10" + empty) == b""
    assert server.messages_received == 1
    client.encrypt(b"skipped")  # nonce 0, already used by the hand-made empty frame
    assert server.receive_data(client.encrypt(b"after")) == b"after"


@pytest.mark.parametrize("length", [0, 1, 15])
def test_frames_shorter_than_a_tag_are_refused(backend: Implementation, length: int) -> None:
    _, server = pair(backend)
    with pytest.raises(RemoteProtocolError, match="shorter than its tag") as error:
        server.receive_data(length.to_bytes(2, "big") + bytes(length))
    assert error.value.code is None
    with pytest.raises(LocalProtocolError, match="already failed"):
        server.receive_data(b"")


def test_one_mebibyte_write(backend: Implementation) -> None:
    client, server = pair(backend)
    data = bytes(range(256)) * 4096
    wire = client.encrypt(data)
    frames = -(-len(data) // MAX_PLAINTEXT_SIZE)
    assert len(wire) == len(data) + frames * 18
    assert client.messages_sent == frames
    # Every frame but the last is a full 65535-byte Noise message.
    position = 0
    sizes = []
    while position < len(wire):
        size = int.from_bytes(wire[position : position + 2], "big")
        sizes.append(size)
        position += 2 + size
    assert sizes[:-1] == [MAX_MESSAGE_SIZE] * (frames - 1)
    assert sizes[-1] == len(data) - (frames - 1) * MAX_PLAINTEXT_SIZE + 16
    assert server.receive_data(wire) == data
    # Reversed direction, delivered in awkward pieces.
    wire = server.encrypt(data)
    received = bytearray()
    for start in range(0, len(wire), 100_003):
        received += client.receive_data(wire[start : start + 100_003])
    assert received == data


@pytest.mark.parametrize(
    ("size", "frames"),
    [(1, 1), (MAX_PLAINTEXT_SIZE, 1), (MAX_PLAINTEXT_SIZE + 1, 2), (2 * MAX_PLAINTEXT_SIZE, 2)],
)
def test_frame_boundaries(backend: Implementation, size: int, frames: int) -> None:
    client, server = pair(backend)
    wire = client.encrypt(b"z" * size)
    assert len(wire) == size + 18 * frames
    assert server.receive_data(wire) == b"z" * size


def test_non_byte_memoryview_is_taken_as_raw_bytes(backend: Implementation) -> None:
    client, server = pair(backend)
    words = memoryview(bytearray(range(200)) * 700).cast("H")
    wire = client.encrypt(words)
    assert server.receive_data(memoryview(array.array("B", wire))) == words.tobytes()


@pytest.mark.parametrize("where", [1, 2, 3, 10, -16, -1])
def test_tampered_transport_frame_is_refused(backend: Implementation, where: int) -> None:
    client, server = pair(backend)
    frame = client.encrypt(b"attack at dawn")
    with pytest.raises(RemoteProtocolError):
        server.receive_data(flip(frame, where) + client.encrypt(b"never seen"))
    with pytest.raises(LocalProtocolError):
        server.receive_data(client.encrypt(b"more"))


def test_replayed_or_reordered_frames_are_refused(backend: Implementation) -> None:
    client, server = pair(backend)
    first, second = client.encrypt(b"one"), client.encrypt(b"two")
    with pytest.raises(RemoteProtocolError, match="authentication"):
        server.receive_data(second + first)
    client, server = pair(backend)
    frame = client.encrypt(b"once")
    assert server.receive_data(frame) == b"once"
    with pytest.raises(RemoteProtocolError):
        server.receive_data(frame)


def test_frames_cannot_be_reflected(backend: Implementation) -> None:
    client, _server = pair(backend)
    with pytest.raises(RemoteProtocolError):
        client.receive_data(client.encrypt(b"mirror"))


def test_buffered_partial_frame_is_reported(backend: Implementation) -> None:
    client, server = pair(backend)
    frame = client.encrypt(b"partial")
    assert server.receive_data(frame[:1]) == b""
    assert server.buffered == 1
    assert server.receive_data(frame[1:9]) == b""
    assert server.buffered == 9
    assert server.receive_data(frame[9:] + frame[:0]) == b"partial"
    assert server.buffered == 0


def test_bytes_received_with_the_handshake_are_decrypted_first(backend: Implementation) -> None:
    client, _ = pair(backend)
    wire = client.encrypt(b"early") + client.encrypt(b"later")
    server = backend.NoiseTransport(SERVER_KEY, CLIENT_KEY, received=wire[:30])
    assert server.buffered == 30
    assert server.receive_data(b"") == b"early"
    assert server.receive_data(wire[30:]) == b"later"


def test_send_nonce_exhaustion_is_a_local_error(backend: Implementation) -> None:
    client, server = pair(backend, client_nonce=MAX_NONCE, server_nonce=MAX_NONCE)
    assert server.receive_data(client.encrypt(b"last")) == b"last"
    with pytest.raises(LocalProtocolError, match="nonce exhausted"):
        client.encrypt(b"one too many")
    # A multi-frame write that would cross the limit is refused before using any nonce.
    client, server = pair(backend, client_nonce=MAX_NONCE - 1)
    with pytest.raises(LocalProtocolError, match="nonce exhausted"):
        client.encrypt(b"y" * (3 * MAX_PLAINTEXT_SIZE))
    assert client.messages_sent == MAX_NONCE - 1


def test_receive_nonce_exhaustion_is_a_remote_error(backend: Implementation) -> None:
    _, server = pair(backend, server_nonce=MAX_NONCE + 1)
    with pytest.raises(RemoteProtocolError, match="receive nonce exhausted"):
        server.receive_data(b"\x00\x10" + bytes(16))


def test_bad_keys_and_nonces_are_value_errors(backend: Implementation) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        backend.NoiseTransport(bytes(31), bytes(32))
    with pytest.raises(ValueError, match="nonces"):
        backend.NoiseTransport(bytes(32), bytes(32), send_nonce=2**64)
    with pytest.raises(ValueError, match="nonces"):
        backend.NoiseTransport(bytes(32), bytes(32), receive_nonce=-1)


def test_take_moves_the_channel_and_retires_the_original(backend: Implementation) -> None:
    client, server = pair(backend)
    frame = client.encrypt(b"handed over")
    assert server.receive_data(frame[:5]) == b""
    taken = server.take()
    assert taken.buffered == 5 and server.buffered == 0
    assert taken.receive_data(frame[5:]) == b"handed over"
    assert taken.messages_received == 1
    for use in (
        lambda: server.receive_data(b""),
        lambda: server.encrypt(b"x"),
        lambda: server.encrypt(b"x" * (MAX_PLAINTEXT_SIZE + 1)),
        server.take,
    ):
        with pytest.raises(LocalProtocolError, match="handed over"):
            use()
    assert server.encrypt(b"") == b""  # nothing to encrypt, nothing refused
    assert client.receive_data(taken.encrypt(b"reply")) == b"reply"


def test_take_keeps_a_failure(backend: Implementation) -> None:
    _, server = pair(backend)
    with pytest.raises(RemoteProtocolError):
        server.receive_data(b"\x00\x00")
    with pytest.raises(LocalProtocolError, match="already failed"):
        server.take().receive_data(b"")


# --- differential: both backends in lockstep ---------------------------------------------


def twin_pair(*, client_nonce: int = 0, server_nonce: int = 0) -> tuple[Twin, Twin]:
    pure = pair(PURE, client_nonce=client_nonce, server_nonce=server_nonce)
    native = pair(NATIVE, client_nonce=client_nonce, server_nonce=server_nonce)
    return Twin(pure[0], native[0]), Twin(pure[1], native[1])


_writes = st.lists(
    st.one_of(
        st.binary(max_size=80),
        st.integers(0, 3 * MAX_PLAINTEXT_SIZE).map(lambda n: bytes(range(256)) * (n // 256)),
    ),
    max_size=6,
)
_damage = st.one_of(
    st.none(),
    st.tuples(st.integers(min_value=0), st.integers(0, 7)),  # flip one bit somewhere
    st.binary(min_size=1, max_size=40),  # or append garbage
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    writes=_writes,
    cuts=st.lists(st.integers(0, 300_000), max_size=12),
    damage=_damage,
    nonce=st.sampled_from([0, 0, MAX_NONCE - 2, MAX_NONCE]),
    buffer_type=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_backends_agree_on_any_traffic(
    writes: list[bytes],
    cuts: list[int],
    damage: tuple[int, int] | bytes | None,
    nonce: int,
    buffer_type: type,
) -> None:
    client, server = twin_pair(client_nonce=nonce, server_nonce=nonce)
    wire = bytearray()
    for write in writes:
        try:
            wire += client.encrypt(buffer_type(write))
        except LocalProtocolError:
            break  # the nonce ran out the same way on both (Twin checked it)
    if isinstance(damage, tuple) and wire:
        wire[damage[0] % len(wire)] ^= 1 << damage[1]
    elif isinstance(damage, bytes):
        wire += damage
    points = sorted({cut % (len(wire) + 1) for cut in cuts} | {0, len(wire)})
    for start, end in itertools.pairwise(points):
        # An error must be identical on both sides (the Twin checks), then it ends nothing.
        with contextlib.suppress(RemoteProtocolError, LocalProtocolError):
            server.receive_data(buffer_type(bytes(wire[start:end])))
        assert server.buffered >= 0  # read through the Twin: equal on both backends
    assert server.messages_received <= client.messages_sent


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_random_bytes_fail_identically(data: bytes, cuts: list[int]) -> None:
    _, server = twin_pair()
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        try:
            assert server.receive_data(data[start:end]) == b""  # nothing forged decrypts
        except RemoteProtocolError:
            return
