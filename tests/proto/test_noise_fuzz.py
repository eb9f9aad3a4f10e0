"""Property tests for the Noise engine: hostile input fails cleanly, framing never matters.

Every engine fed arbitrary bytes may only raise ``RemoteProtocolError`` subclasses
(``HandshakeError`` during the handshake); anything else, or a hang, is a bug.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neonet.core import backend as backend_module
from neonet.core.errors import HandshakeError, RemoteProtocolError
from neonet.core.keys import Ed25519Identity
from neonet.core.noise_transport import MAX_PLAINTEXT_SIZE, NoiseTransportEngine
from neonet.core.peer_id import PeerId
from neonet.proto.noise import NoiseHandshake

BACKENDS = ("pure", "native")

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)

ALICE = Ed25519Identity.from_seed(bytes([0xA1]) * 32)
BOB = Ed25519Identity.from_seed(bytes([0xB0]) * 32)


def seeded_entropy(seed: bytes) -> Callable[[int], bytes]:
    counter = itertools.count()
    return lambda size: hashlib.sha256(seed + next(counter).to_bytes(4, "big")).digest()[:size]


def make_pair() -> tuple[NoiseHandshake, NoiseHandshake]:
    initiator = NoiseHandshake(
        initiator=True,
        identity=ALICE,
        entropy=seeded_entropy(b"i"),
        expected_peer=PeerId.from_public_key(BOB.public_key),
        stream_muxers=("/yamux/1.0.0",),
    )
    responder = NoiseHandshake(
        initiator=False, identity=BOB, entropy=seeded_entropy(b"r"), stream_muxers=("/yamux/1.0.0",)
    )
    initiator.initiate()
    return initiator, responder


def handshake_messages() -> list[bytes]:
    initiator, responder = make_pair()
    first = initiator.data_to_send()
    responder.receive_data(first)
    second = responder.data_to_send()
    initiator.receive_data(second)
    third = initiator.data_to_send()
    responder.receive_data(third)
    return [first, second, third]


def established(name: backend_module.BackendName) -> tuple[NoiseTransportEngine, ...]:
    initiator, responder = make_pair()
    responder.receive_data(initiator.data_to_send())
    initiator.receive_data(responder.data_to_send())
    responder.receive_data(initiator.data_to_send())
    implementation = backend_module.implementation(name)
    return initiator.into_transport(implementation), responder.into_transport(implementation)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# Arbitrary bytes, and arbitrary bytes dressed as frames so they get past the framing and
# reach the cryptography (sizes around the handshake message sizes and beyond).
raw_bytes = st.binary(max_size=600)
frame_bodies = st.one_of(
    st.binary(max_size=200),
    st.integers(min_value=0, max_value=400).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
)
framed_bytes = st.lists(frame_bodies, max_size=4).map(
    lambda bodies: b"".join(len(body).to_bytes(2, "big") + body for body in bodies)
)
hostile = st.one_of(raw_bytes, framed_bytes)
cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=8)


def feed_handshake(engine: NoiseHandshake, data: bytes, split_at: list[int]) -> None:
    try:
        for piece in chunked(data, split_at):
            engine.receive_data(piece)
    except HandshakeError:
        return
    engine.data_to_send()  # whatever it wants to say is well-formed bytes
    assert not engine.complete  # random bytes never authenticate


@FUZZ
@given(data=hostile, split_at=cuts)
def test_responder_survives_random_bytes(data: bytes, split_at: list[int]) -> None:
    _, responder = make_pair()
    feed_handshake(responder, data, split_at)


@FUZZ
@given(data=hostile, split_at=cuts)
def test_responder_after_message_one_survives_random_bytes(
    data: bytes, split_at: list[int]
) -> None:
    initiator, responder = make_pair()
    responder.receive_data(initiator.data_to_send())
    feed_handshake(responder, data, split_at)


@FUZZ
@given(data=hostile, split_at=cuts)
def test_initiator_after_message_one_survives_random_bytes(
    data: bytes, split_at: list[int]
) -> None:
    initiator, _ = make_pair()
    feed_handshake(initiator, data, split_at)


@FUZZ
@given(
    message=st.integers(min_value=0, max_value=2),
    position=st.integers(min_value=2),
    replacement=st.binary(min_size=1, max_size=8),
)
def test_corrupted_handshake_messages_fail_as_handshake_errors(
    message: int, position: int, replacement: bytes
) -> None:
    messages = handshake_messages()
    target = bytearray(messages[message])
    position = 2 + position % (len(target) - 2)
    original = bytes(target[position : position + len(replacement)])
    target[position : position + len(replacement)] = replacement[: len(target) - position]
    if bytes(target[position : position + len(replacement)]) == original:
        return  # the "corruption" changed nothing
    messages[message] = bytes(target)
    initiator, responder = make_pair()
    try:
        responder.receive_data(messages[0])
        initiator.receive_data(messages[1] if message == 1 else responder.data_to_send())
        responder.receive_data(messages[2] if message == 2 else initiator.data_to_send())
    except HandshakeError:
        return
    raise AssertionError("a corrupted handshake completed")


@FUZZ
@given(payload=st.binary(max_size=300), bad_side=st.sampled_from(["initiator", "responder"]))
def test_random_payloads_inside_valid_encryption_are_refused(payload: bytes, bad_side: str) -> None:
    # The peer speaks perfect Noise but its libp2p payload is arbitrary bytes.
    initiator, responder = make_pair()
    (initiator if bad_side == "initiator" else responder)._payload = payload
    try:
        responder.receive_data(initiator.data_to_send())
        initiator.receive_data(responder.data_to_send())
        responder.receive_data(initiator.data_to_send())
    except HandshakeError:
        return
    raise AssertionError("an unsigned payload was accepted")


@pytest.mark.parametrize("name", BACKENDS)
@FUZZ
@given(data=hostile, split_at=cuts)
def test_transport_survives_random_bytes(
    name: backend_module.BackendName, data: bytes, split_at: list[int]
) -> None:
    _client, server = established(name)
    try:
        for piece in chunked(data, split_at):
            assert server.receive_data(piece) == b""  # nothing forged ever decrypts
    except RemoteProtocolError:
        return


@pytest.mark.parametrize("name", BACKENDS)
@FUZZ
@given(
    writes=st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.integers(min_value=0, max_value=3 * MAX_PLAINTEXT_SIZE).map(
                lambda n: bytes(range(256)) * (n // 256) + bytes(n % 256)
            ),
        ),
        max_size=6,
    ),
    split_at=st.lists(st.integers(min_value=0, max_value=400_000), max_size=12),
)
def test_frames_split_anywhere_decrypt_to_the_same_plaintext(
    name: backend_module.BackendName, writes: list[bytes], split_at: list[int]
) -> None:
    client, server = established(name)
    wire = b"".join(client.encrypt(write) for write in writes)
    received = bytearray()
    for piece in chunked(wire, split_at):
        received += server.receive_data(piece)
    assert received == b"".join(writes)
    assert server.buffered == 0
    assert server.messages_received == client.messages_sent


@pytest.mark.parametrize("name", BACKENDS)
@FUZZ
@given(split_at=cuts, trailing=st.binary(max_size=100), tail_cut=st.integers(min_value=0))
def test_handshake_and_pipelined_data_split_anywhere(
    name: backend_module.BackendName, split_at: list[int], trailing: bytes, tail_cut: int
) -> None:
    implementation = backend_module.implementation(name)
    initiator, responder = make_pair()
    for piece in chunked(initiator.data_to_send(), split_at):
        responder.receive_data(piece)
    for piece in chunked(responder.data_to_send(), split_at):
        initiator.receive_data(piece)
    client = initiator.into_transport(implementation)
    frames = client.encrypt(trailing) + client.encrypt(b"end")
    cut = tail_cut % (len(frames) + 1)
    for piece in chunked(initiator.data_to_send() + frames[:cut], split_at):
        responder.receive_data(piece)
    assert responder.complete
    server = responder.into_transport(implementation)
    received = server.receive_data(b"") + server.receive_data(frames[cut:])
    assert received == trailing + b"end"
