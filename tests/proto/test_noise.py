"""Tests for the sans-I/O libp2p Noise engine (neonet.proto.noise)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from neonet.core import backend as backend_module
from neonet.core.backend import Implementation
from neonet.core.errors import (
    DecodeError,
    HandshakeError,
    LocalProtocolError,
    PeerIdMismatchError,
)
from neonet.core.keys import Ed25519Identity, KeyType, PublicKey
from neonet.core.noise_transport import MAX_MESSAGE_SIZE, NoiseTransportEngine
from neonet.core.peer_id import PeerId
from neonet.proto import noise
from neonet.proto.noise import NoiseHandshake
from neonet.proto.pb import noise_pb2

YAMUX = "/yamux/1.0.0"
MPLEX = "/mplex/6.7.0"


# --- helpers -----------------------------------------------------------------------------


def seeded_entropy(seed: bytes) -> Callable[[int], bytes]:
    """A deterministic stand-in for os.urandom (SHA-256 in counter mode)."""
    counter = itertools.count()

    def entropy(size: int) -> bytes:
        out = b""
        while len(out) < size:
            out += hashlib.sha256(seed + next(counter).to_bytes(4, "big")).digest()
        return out[:size]

    return entropy


ALICE = Ed25519Identity.from_seed(bytes([0xA1]) * 32)
BOB = Ed25519Identity.from_seed(bytes([0xB0]) * 32)
ALICE_ID = PeerId.from_public_key(ALICE.public_key)
BOB_ID = PeerId.from_public_key(BOB.public_key)


def make_pair(
    *,
    initiator_identity: object = ALICE,
    responder_identity: object = BOB,
    expected_peer: PeerId | None = None,
    initiator_muxers: tuple[str, ...] = (),
    responder_muxers: tuple[str, ...] = (),
    seed: bytes = b"",
) -> tuple[NoiseHandshake, NoiseHandshake]:
    initiator = NoiseHandshake(
        initiator=True,
        identity=initiator_identity,  # type: ignore[arg-type]
        entropy=seeded_entropy(b"initiator" + seed),
        expected_peer=expected_peer,
        stream_muxers=initiator_muxers,
    )
    responder = NoiseHandshake(
        initiator=False,
        identity=responder_identity,  # type: ignore[arg-type]
        entropy=seeded_entropy(b"responder" + seed),
        stream_muxers=responder_muxers,
    )
    initiator.initiate()
    return initiator, responder


def deliver(engine: NoiseHandshake, data: bytes, chunk: int | None = None) -> None:
    if chunk is None:
        engine.receive_data(data)
        return
    for start in range(0, len(data), chunk):
        engine.receive_data(data[start : start + chunk])


def run_handshake(
    initiator: NoiseHandshake, responder: NoiseHandshake, chunk: int | None = None
) -> list[bytes]:
    """Shuttle messages until both sides are done; return the three framed messages."""
    messages = []
    for _ in range(3):
        data = initiator.data_to_send()
        if data:
            messages.append(data)
            deliver(responder, data, chunk)
        data = responder.data_to_send()
        if data:
            messages.append(data)
            deliver(initiator, data, chunk)
        if initiator.complete and responder.complete:
            break
    assert initiator.complete and responder.complete
    return messages


def transports(
    initiator: NoiseHandshake, responder: NoiseHandshake
) -> tuple[NoiseTransportEngine, NoiseTransportEngine]:
    run_handshake(initiator, responder)
    return initiator.into_transport(), responder.into_transport()


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


class Signer:
    """A non-Ed25519 identity for the remote side (NoiseHandshake only uses these two)."""

    def __init__(self, public_key: PublicKey, sign: Callable[[bytes], bytes]) -> None:
        self.public_key = public_key
        self.sign = sign


def secp256k1_signer() -> Signer:
    private = ec.generate_private_key(ec.SECP256K1())
    data = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    return Signer(
        PublicKey(KeyType.SECP256K1, data),
        lambda message: private.sign(message, ec.ECDSA(hashes.SHA256())),
    )


def ecdsa_signer() -> Signer:
    private = ec.generate_private_key(ec.SECP256R1())
    data = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Signer(
        PublicKey(KeyType.ECDSA, data),
        lambda message: private.sign(message, ec.ECDSA(hashes.SHA256())),
    )


def rsa_signer() -> Signer:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    data = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Signer(
        PublicKey(KeyType.RSA, data),
        lambda message: private.sign(message, padding.PKCS1v15(), hashes.SHA256()),
    )


# --- the Noise core against the published test vector ------------------------------------

# Noise_XX_25519_ChaChaPoly_SHA256 from the cacophony test vectors (the set the Noise
# wiki points implementations at): prologue "John Galt", fixed static/ephemeral keys.
VECTOR_PROLOGUE = bytes.fromhex("4a6f686e2047616c74")
VECTOR_INIT_STATIC = bytes.fromhex(
    "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1"
)
VECTOR_INIT_EPHEMERAL = bytes.fromhex(
    "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a"
)
VECTOR_RESP_STATIC = bytes.fromhex(
    "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893"
)
VECTOR_RESP_EPHEMERAL = bytes.fromhex(
    "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b"
)
VECTOR_HANDSHAKE_HASH = bytes.fromhex(
    "c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e"
)
VECTOR_MESSAGES = [
    (
        "4c756477696720766f6e204d69736573",
        "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944"
        "4c756477696720766f6e204d69736573",
    ),
    (
        "4d757272617920526f746862617264",
        "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad1f276e038c48378ffce2b6"
        "5285e08d6b68aaa3629a5a8639392490e5b9bd5269c2f1e4f488ed8831161f19b7815528f8982ffe09be9b5c412f"
        "8a0db50f8814c7194e83f23dbd8d162c9326ad",
    ),
    (
        "462e20412e20486179656b",
        "c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a80ae475b9df0f169ae80a89be0865"
        "b57f58c9fea0d4ec82a286427402f113e4b6ae769a1d95941d49b25030",
    ),
    ("4361726c204d656e676572", "96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df"),
    (
        "4a65616e2d426170746973746520536179",
        "3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5",
    ),
    (
        "457567656e2042f6686d20766f6e2042617765726b",
        "eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502ae3f",
    ),
]


def test_core_matches_noise_test_vector(backend: Implementation) -> None:
    initiator = noise._XXHandshakeState(
        initiator=True,
        static_secret=VECTOR_INIT_STATIC,
        ephemeral_secret=VECTOR_INIT_EPHEMERAL,
        prologue=VECTOR_PROLOGUE,
    )
    responder = noise._XXHandshakeState(
        initiator=False,
        static_secret=VECTOR_RESP_STATIC,
        ephemeral_secret=VECTOR_RESP_EPHEMERAL,
        prologue=VECTOR_PROLOGUE,
    )
    for index, (payload_hex, ciphertext_hex) in enumerate(VECTOR_MESSAGES[:3]):
        writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
        message = writer.write_message(bytes.fromhex(payload_hex))
        assert message.hex() == ciphertext_hex
        assert reader.read_message(message) == bytes.fromhex(payload_hex)
    assert initiator.finished and responder.finished
    assert initiator.handshake_hash == responder.handshake_hash == VECTOR_HANDSHAKE_HASH
    assert initiator.remote_static == responder.static_public
    assert responder.remote_static == initiator.static_public
    # Transport messages keep alternating, starting with the responder (message 4).
    sides = {
        True: backend.NoiseTransport(*initiator.split()),
        False: backend.NoiseTransport(*responder.split()),
    }
    for index, (payload_hex, ciphertext_hex) in enumerate(VECTOR_MESSAGES[3:], start=3):
        sender_is_initiator = index % 2 == 0
        payload = bytes.fromhex(payload_hex)
        frame = sides[sender_is_initiator].encrypt(payload)
        assert frame[2:].hex() == ciphertext_hex
        assert int.from_bytes(frame[:2], "big") == len(frame) - 2
        assert sides[not sender_is_initiator].receive_data(frame) == payload


def test_core_refuses_out_of_turn_use() -> None:
    core = noise._XXHandshakeState(
        initiator=False, static_secret=bytes(32), ephemeral_secret=bytes([1]) * 32
    )
    with pytest.raises(LocalProtocolError):
        core.write_message(b"")
    with pytest.raises(LocalProtocolError):
        core.split()


# --- the libp2p handshake ----------------------------------------------------------------


def test_handshake_completes_and_both_learn_the_peer() -> None:
    initiator, responder = make_pair(
        expected_peer=BOB_ID, initiator_muxers=(YAMUX, MPLEX), responder_muxers=(YAMUX,)
    )
    assert not initiator.complete and not responder.complete
    messages = run_handshake(initiator, responder)
    assert len(messages) == 3
    assert initiator.remote_peer_id == BOB_ID
    assert responder.remote_peer_id == ALICE_ID
    assert initiator.remote_public_key == BOB.public_key
    assert responder.remote_public_key == ALICE.public_key
    assert initiator.remote_stream_muxers == (YAMUX,)
    assert responder.remote_stream_muxers == (YAMUX, MPLEX)
    assert initiator.handshake_hash == responder.handshake_hash
    assert initiator.data_to_send() == b"" and responder.data_to_send() == b""


def test_message_sizes_match_the_xx_pattern() -> None:
    initiator, responder = make_pair()
    first, second, third = run_handshake(initiator, responder)
    # 2-byte prefix + e; + e, encrypted s, encrypted payload; + encrypted s, payload.
    assert len(first) == 2 + 32
    payload_size = len(second) - 2 - 32 - 48 - 16
    assert len(third) == 2 + 48 + payload_size + 16
    assert int.from_bytes(second[:2], "big") == len(second) - 2


def test_no_muxers_means_empty_tuple() -> None:
    initiator, responder = make_pair()
    run_handshake(initiator, responder)
    assert initiator.remote_stream_muxers == () == responder.remote_stream_muxers


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 33, 34, 35])
def test_handshake_survives_any_chunking(chunk: int) -> None:
    initiator, responder = make_pair(expected_peer=BOB_ID, responder_muxers=(YAMUX,))
    run_handshake(initiator, responder, chunk=chunk)
    assert initiator.remote_peer_id == BOB_ID and responder.remote_peer_id == ALICE_ID
    client, server = initiator.into_transport(), responder.into_transport()
    assert server.receive_data(client.encrypt(b"ping")) == b"ping"


def test_message_three_pipelined_with_transport_data() -> None:
    initiator, responder = make_pair()
    responder.receive_data(initiator.data_to_send())
    initiator.receive_data(responder.data_to_send())
    assert initiator.complete and not responder.complete
    client = initiator.into_transport()
    early = client.encrypt(b"early bird") + client.encrypt(b"x" * 70_000)
    # Message 3, two whole transport messages and half of a third, in one read.
    late = client.encrypt(b"late")
    burst = initiator.data_to_send() + early + late[:5]
    responder.receive_data(burst)
    assert responder.complete
    server = responder.into_transport()
    assert server.buffered == len(early) + 5
    assert server.receive_data(b"") == b"early bird" + b"x" * 70_000
    assert server.receive_data(b"") == b""
    assert server.receive_data(late[5:]) == b"late"
    assert server.buffered == 0


def test_pipelined_bytes_arriving_before_the_last_handshake_byte() -> None:
    initiator, responder = make_pair()
    responder.receive_data(initiator.data_to_send())
    initiator.receive_data(responder.data_to_send())
    client = initiator.into_transport()
    stream = initiator.data_to_send() + client.encrypt(b"hello") + client.encrypt(b"world")
    for index in range(len(stream)):
        responder.receive_data(stream[index : index + 1])
    server = responder.into_transport()
    assert server.receive_data(b"") == b"helloworld"


def test_expected_peer_mismatch_names_both_peers() -> None:
    stranger = PeerId.from_public_key(Ed25519Identity.from_seed(bytes(32)).public_key)
    initiator, responder = make_pair(expected_peer=stranger)
    responder.receive_data(initiator.data_to_send())
    with pytest.raises(PeerIdMismatchError) as caught:
        initiator.receive_data(responder.data_to_send())
    assert str(stranger) in str(caught.value)
    assert str(BOB_ID) in str(caught.value)
    assert initiator.remote_peer_id is None  # nothing about the peer leaks out
    assert initiator.data_to_send() == b""  # and message 3 is never sent
    with pytest.raises(LocalProtocolError):
        initiator.receive_data(b"")


def test_responder_learns_the_initiator_only_after_message_three() -> None:
    initiator, responder = make_pair(initiator_muxers=(YAMUX,))
    responder.receive_data(initiator.data_to_send())
    assert responder.remote_peer_id is None
    initiator.receive_data(responder.data_to_send())
    assert responder.remote_peer_id is None and not responder.remote_stream_muxers
    responder.receive_data(initiator.data_to_send())
    assert responder.remote_peer_id == ALICE_ID
    assert responder.remote_stream_muxers == (YAMUX,)


@pytest.mark.parametrize(
    "make_signer", [secp256k1_signer, ecdsa_signer, rsa_signer], ids=["secp256k1", "ecdsa", "rsa"]
)
@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_other_identity_key_types_authenticate(
    make_signer: Callable[[], Signer], role: str
) -> None:
    signer = make_signer()
    peer = PeerId.from_public_key(signer.public_key)
    if role == "responder":
        initiator, responder = make_pair(responder_identity=signer, expected_peer=peer)
        run_handshake(initiator, responder)
        assert initiator.remote_peer_id == peer
        assert initiator.remote_public_key == signer.public_key
    else:
        initiator, responder = make_pair(initiator_identity=signer)
        run_handshake(initiator, responder)
        assert responder.remote_peer_id == peer
        assert responder.remote_public_key == signer.public_key


# --- a dishonest or broken peer -----------------------------------------------------------


def _failing_side(initiator: NoiseHandshake, responder: NoiseHandshake, bad_role: str) -> None:
    """Run the handshake, expecting the side facing ``bad_role`` to raise HandshakeError."""
    responder.receive_data(initiator.data_to_send())
    if bad_role == "responder":
        with pytest.raises(HandshakeError) as caught:
            initiator.receive_data(responder.data_to_send())
    else:
        initiator.receive_data(responder.data_to_send())
        with pytest.raises(HandshakeError) as caught:
            responder.receive_data(initiator.data_to_send())
    assert not isinstance(caught.value, PeerIdMismatchError)


@pytest.mark.parametrize("bad_role", ["initiator", "responder"])
def test_signature_over_the_wrong_static_key_is_refused(bad_role: str) -> None:
    liar = Signer(ALICE.public_key, lambda message: ALICE.sign(message + b"!"))
    identities: dict[str, object] = {"initiator_identity": ALICE, "responder_identity": BOB}
    identities[f"{bad_role}_identity"] = liar
    initiator, responder = make_pair(**identities)  # type: ignore[arg-type]
    _failing_side(initiator, responder, bad_role)


@pytest.mark.parametrize("bad_role", ["initiator", "responder"])
def test_identity_key_that_did_not_sign_is_refused(bad_role: str) -> None:
    # Claims BOB's identity but can only sign with ALICE's key.
    impostor = Signer(BOB.public_key, ALICE.sign)
    identities: dict[str, object] = {"initiator_identity": ALICE, "responder_identity": BOB}
    identities[f"{bad_role}_identity"] = impostor
    initiator, responder = make_pair(**identities)  # type: ignore[arg-type]
    _failing_side(initiator, responder, bad_role)


def _payload(**fields: bytes) -> bytes:
    return noise_pb2.NoiseHandshakePayload(**fields).SerializeToString()  # type: ignore[arg-type]


@pytest.mark.parametrize("bad_role", ["initiator", "responder"])
@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xff\xff",  # not a protobuf
        _payload(identity_key=ALICE.public_key.to_protobuf()),  # no signature
        _payload(identity_sig=b"x" * 64),  # no key
        _payload(identity_key=b"\x08\x01\x12\x03abc", identity_sig=b"x" * 64),  # short Ed25519
        _payload(identity_key=b"\x08\x09\x12\x01a", identity_sig=b"x" * 64),  # unknown type
    ],
    ids=["empty", "garbage", "no-sig", "no-key", "short-key", "unknown-key-type"],
)
def test_malformed_payloads_are_refused(bad_role: str, payload: bytes) -> None:
    initiator, responder = make_pair()
    (initiator if bad_role == "initiator" else responder)._payload = payload
    _failing_side(initiator, responder, bad_role)


def test_undecodable_identity_key_keeps_the_decode_error_as_cause() -> None:
    initiator, responder = make_pair()
    responder._payload = _payload(identity_key=b"\x08\x01\x12\x03abc", identity_sig=b"s")
    responder.receive_data(initiator.data_to_send())
    with pytest.raises(HandshakeError) as caught:
        initiator.receive_data(responder.data_to_send())
    assert isinstance(caught.value.__cause__, DecodeError)


def test_invalid_utf8_muxer_names_are_dropped() -> None:
    initiator, responder = make_pair()
    extensions = noise_pb2.NoiseExtensions(stream_muxers=[YAMUX]).SerializeToString()
    # Field 2 (stream_muxers) with invalid UTF-8 spliced in next to a valid one.
    extensions += b"\x12\x02\xff\xfe"
    good = noise_pb2.NoiseHandshakePayload()
    good.ParseFromString(responder._payload)
    responder._payload = good.SerializeToString() + b"\x22" + bytes([len(extensions)]) + extensions
    run_handshake(initiator, responder)
    assert initiator.remote_stream_muxers == (YAMUX,)


def test_every_tampered_handshake_byte_is_caught() -> None:
    reference = run_handshake(*make_pair())
    for message_index, message in enumerate(reference):
        for position in range(2, len(message)):  # the body; the length prefix is framing
            initiator, responder = make_pair()
            tampered = [
                flip(m, position, position % 8) if i == message_index else m
                for i, m in enumerate(reference)
            ]
            with pytest.raises(HandshakeError) as caught:
                responder.receive_data(tampered[0])
                initiator.receive_data(
                    responder.data_to_send() if message_index != 1 else tampered[1]
                )
                responder.receive_data(
                    initiator.data_to_send() if message_index != 2 else tampered[2]
                )
            assert not isinstance(caught.value, PeerIdMismatchError)
            assert not (initiator.complete and responder.complete)


def test_low_order_ephemeral_key_is_refused() -> None:
    responder = make_pair()[1]
    with pytest.raises(HandshakeError):
        responder.receive_data(b"\x00\x20" + bytes(32))


@pytest.mark.parametrize("length", [0, 1, 31])
def test_short_message_one_is_refused(length: int) -> None:
    responder = make_pair()[1]
    with pytest.raises(HandshakeError):
        responder.receive_data(length.to_bytes(2, "big") + bytes(length))


def test_short_message_two_and_three_are_refused() -> None:
    initiator, responder = make_pair()
    responder.receive_data(initiator.data_to_send())
    message_two = responder.data_to_send()
    with pytest.raises(HandshakeError):
        initiator.receive_data((95).to_bytes(2, "big") + message_two[2:97])
    initiator, responder = make_pair()
    responder.receive_data(initiator.data_to_send())
    initiator.receive_data(responder.data_to_send())
    message_three = initiator.data_to_send()
    with pytest.raises(HandshakeError):
        responder.receive_data((63).to_bytes(2, "big") + message_three[2:65])


def test_message_one_payload_is_tolerated() -> None:
    # Noise allows a cleartext payload in message 1; libp2p peers send none, and what is
    # there is ignored beyond being bound into the transcript.
    core = noise._XXHandshakeState(
        initiator=True, static_secret=bytes([3]) * 32, ephemeral_secret=bytes([4]) * 32
    )
    responder = make_pair()[1]
    first = core.write_message(b"hello")
    responder.receive_data(len(first).to_bytes(2, "big") + first)
    second = responder.data_to_send()
    assert core.read_message(second[2:])  # the transcript (with "hello") agrees


def test_payload_wire_format_checked_with_the_bare_core() -> None:
    """Drive a NoiseHandshake with the bare core and decode its payload independently."""
    core = noise._XXHandshakeState(
        initiator=True, static_secret=bytes([5]) * 32, ephemeral_secret=bytes([6]) * 32
    )
    responder = make_pair(responder_muxers=(YAMUX, MPLEX))[1]
    first = core.write_message(b"")
    responder.receive_data(len(first).to_bytes(2, "big") + first)
    framed = responder.data_to_send()
    assert int.from_bytes(framed[:2], "big") == len(framed) - 2
    payload = noise_pb2.NoiseHandshakePayload()
    payload.ParseFromString(core.read_message(framed[2:]))
    assert payload.identity_key == BOB.public_key.to_protobuf()
    assert BOB.public_key.verify(
        payload.identity_sig, b"noise-libp2p-static-key:" + core.remote_static
    )
    assert list(payload.extensions.stream_muxers) == [YAMUX, MPLEX]
    assert not payload.extensions.webtransport_certhashes
    # Our answer, built by hand, is accepted and authenticates ALICE.
    answer = noise_pb2.NoiseHandshakePayload(
        identity_key=ALICE.public_key.to_protobuf(),
        identity_sig=ALICE.sign(b"noise-libp2p-static-key:" + core.static_public),
    ).SerializeToString()
    third = core.write_message(answer)
    responder.receive_data(len(third).to_bytes(2, "big") + third)
    assert responder.complete and responder.remote_peer_id == ALICE_ID
    assert responder.remote_stream_muxers == ()
    # And the split keys agree with the core's.
    server = responder.into_transport()
    client = backend_module.ACTIVE.NoiseTransport(*core.split())
    assert server.receive_data(client.encrypt(b"via core")) == b"via core"
    assert client.receive_data(server.encrypt(b"to core")) == b"to core"


def test_largest_payload_fits_and_one_more_byte_is_refused() -> None:
    base = len(
        noise_pb2.NoiseHandshakePayload(
            identity_key=BOB.public_key.to_protobuf(), identity_sig=bytes(64)
        ).SerializeToString()
    )
    # One muxer name of n bytes costs 1 + 3 (extensions tag, varint) + 1 + 3 + n bytes.
    name = "m" * (noise.MAX_PAYLOAD_SIZE - base - 8)
    initiator, responder = make_pair(responder_muxers=(name,), initiator_muxers=(name,))
    messages = run_handshake(initiator, responder)
    assert len(messages[1]) == 2 + MAX_MESSAGE_SIZE
    assert initiator.remote_stream_muxers == (name,)
    with pytest.raises(LocalProtocolError):
        make_pair(responder_muxers=(name + "m",))


# --- misuse ----------------------------------------------------------------------------


def test_caller_misuse_is_a_local_protocol_error() -> None:
    responder = NoiseHandshake(initiator=False, identity=BOB, entropy=seeded_entropy(b"r"))
    with pytest.raises(LocalProtocolError):
        responder.initiate()
    with pytest.raises(LocalProtocolError):
        responder.into_transport()
    with pytest.raises(LocalProtocolError):
        _ = responder.handshake_hash
    initiator = NoiseHandshake(initiator=True, identity=ALICE, entropy=seeded_entropy(b"i"))
    with pytest.raises(LocalProtocolError):
        initiator.receive_data(b"\x00")
    initiator.initiate()
    with pytest.raises(LocalProtocolError):
        initiator.initiate()
    with pytest.raises(LocalProtocolError):
        NoiseHandshake(initiator=True, identity=ALICE, entropy=lambda size: b"short")


def test_into_transport_only_once() -> None:
    initiator, responder = make_pair()
    run_handshake(initiator, responder)
    initiator.into_transport()
    with pytest.raises(LocalProtocolError):
        initiator.into_transport()
    with pytest.raises(LocalProtocolError):
        initiator.receive_data(b"late")


def test_failed_handshake_refuses_more_input() -> None:
    responder = make_pair()[1]
    with pytest.raises(HandshakeError):
        responder.receive_data(b"\x00\x01x")
    with pytest.raises(LocalProtocolError):
        responder.receive_data(b"")


# --- known answer for the whole libp2p exchange -------------------------------------------

# SHA-256 over the three framed handshake messages and one transport frame each way, with
# fixed entropy and identities. A change here means the bytes on the wire changed.
PINNED_TRANSCRIPT_SHA256 = "5bb7e54352bdde6964c1dc931bf8cd7f05c773483e1a029d29e76cef1d083056"


def test_libp2p_transcript_is_stable() -> None:
    initiator, responder = make_pair(
        expected_peer=BOB_ID, initiator_muxers=(YAMUX,), responder_muxers=(YAMUX,), seed=b"kat"
    )
    messages = run_handshake(initiator, responder)
    client, server = initiator.into_transport(), responder.into_transport()
    to_server = client.encrypt(b"/ipfs/ping/1.0.0")
    to_client = server.encrypt(b"pong")
    assert server.receive_data(to_server) == b"/ipfs/ping/1.0.0"
    assert client.receive_data(to_client) == b"pong"
    transcript = b"".join(messages) + to_server + to_client
    assert hashlib.sha256(transcript).hexdigest() == PINNED_TRANSCRIPT_SHA256
    # The same inputs give the same bytes (no hidden randomness).
    again = make_pair(
        expected_peer=BOB_ID, initiator_muxers=(YAMUX,), responder_muxers=(YAMUX,), seed=b"kat"
    )
    assert run_handshake(*again) == messages
