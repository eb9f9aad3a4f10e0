"""The signal path's byte-level codec (neonet.core.ssn_wire, both backends) against the
protocols' general decoders and encoders: whatever it parses, they decode to the same
fields; what it builds, they build byte for byte; both backends agree on every input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from neonet.core import backend as backend_module
from neonet.core.errors import DecodeError
from neonet.core.varint import encode_uvarint
from neonet.proto.ssn import client_protocol as cp
from neonet.proto.ssn import federation as fed

PURE = backend_module.implementation("pure").ssn_wire
NATIVE = backend_module.implementation("native").ssn_wire
MAX_RID = (1 << 63) - 1

# Identity multihash peer IDs up to the 128 bytes is_peer_id accepts (2-byte header
# when the key is under 128 bytes, 3-byte header beyond: 0x00, uvarint length, key).
identity_peers = st.binary(min_size=1, max_size=125).map(
    lambda key: bytes((0,)) + encode_uvarint(len(key)) + key
)
sha256_peers = st.binary(min_size=32, max_size=32).map(lambda digest: b"\x12\x20" + digest)
peers = st.one_of(identity_peers, sha256_peers)
rids = st.one_of(
    st.integers(0, 30), st.integers(0, MAX_RID), st.sampled_from([23, 24, 255, 256, 65535])
)
payloads = st.binary(max_size=400)
statuses = st.sampled_from(list(cp.SignalStatus))

client_messages = st.one_of(
    st.builds(cp.Signal, rids, peers, payloads),
    st.builds(cp.SignalSent, rids, statuses),
    st.builds(cp.Incoming, peers, payloads),
    st.builds(cp.Registered, rids),
    st.builds(cp.Error, rids, st.sampled_from(list(cp.ErrorCode)), st.text(max_size=20)),
)
federation_messages = st.one_of(
    st.builds(fed.Forward, rids, peers, peers, payloads),
    st.builds(fed.Forwarded, rids, statuses),
    st.builds(fed.Stored, rids),
    st.builds(fed.FederationLookup, rids, st.binary(min_size=1, max_size=40)),
)


def _fields(message: object) -> tuple[object, ...] | None:
    """What parse_signal_path returns for a decoded message (None: not on the path)."""
    if isinstance(message, cp.Signal):
        return (5, message.request_id, message.to, message.payload)
    if isinstance(message, cp.SignalSent):
        return (6, message.request_id, int(message.status))
    if isinstance(message, cp.Incoming):
        return (8, 0, message.sender, message.payload)
    if isinstance(message, fed.Forward):
        return (2, message.request_id, message.sender, message.to, message.payload)
    if isinstance(message, fed.Forwarded):
        return (5, message.request_id, int(message.status))
    return None


def _check(body: bytes, federation: bool) -> tuple[object, ...] | None:
    pure = PURE.parse_signal_path(body, federation)
    native = NATIVE.parse_signal_path(body, federation)
    assert pure == native
    if pure is not None:
        decode = fed.decode_message if federation else cp.decode_message
        assert _fields(decode(body)) == pure
    return pure


@st.composite
def mutated(draw: st.DrawFn, messages: st.SearchStrategy[object], federation: bool) -> bytes:
    encode = fed.encode_message if federation else cp.encode_message
    body = bytearray(encode(draw(messages)))  # type: ignore[arg-type]
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["flip", "truncate", "append", "insert"]))
        position = draw(st.integers(0, max(0, len(body) - 1)))
        if action == "flip" and body:
            body[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "truncate":
            del body[position:]
        elif action == "append":
            body += draw(st.binary(min_size=1, max_size=3))
        else:
            body[position:position] = draw(st.binary(min_size=1, max_size=2))
    return bytes(body)


@settings(max_examples=600, deadline=None)
@given(client_messages)
def test_client_path_messages_parse_like_the_decoder(message: cp.ClientMessage) -> None:
    body = cp.encode_message(message)
    parsed = _check(body, False)
    assert parsed == _fields(message)  # every signal-path message takes the fast path
    assert _check(body, True) is None or isinstance(message, cp.SignalSent | cp.Registered)


@settings(max_examples=600, deadline=None)
@given(federation_messages)
def test_federation_path_messages_parse_like_the_decoder(message: fed.FederationMessage) -> None:
    body = fed.encode_message(message)
    assert _check(body, True) == _fields(message)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(mutated(client_messages, False), st.binary(max_size=80)))
@example(b"\x85\x01\x05\x18\x05\x42\x00\x00\x40")  # request ID 5 in two bytes
@example(b"\x84\x01\x06\x01\x02")  # status 2
def test_malformed_client_frames_are_left_to_the_decoder(body: bytes) -> None:
    parsed = _check(body, False)
    if parsed is None:  # the general decoder decides: a message, or DecodeError
        try:
            message = cp.decode_message(body)
        except DecodeError:
            return
        assert _fields(message) is None


@settings(max_examples=1500, deadline=None)
@given(st.one_of(mutated(federation_messages, True), st.binary(max_size=80)))
def test_malformed_federation_frames_are_left_to_the_decoder(body: bytes) -> None:
    parsed = _check(body, True)
    if parsed is None:
        try:
            message = fed.decode_message(body)
        except DecodeError:
            return
        assert _fields(message) is None


@settings(max_examples=400, deadline=None)
@given(rids, peers, peers, payloads, statuses)
def test_encoders_build_the_protocols_frames(
    rid: int, sender: bytes, to: bytes, payload: bytes, status: cp.SignalStatus
) -> None:
    for wire in (PURE, NATIVE):
        assert wire.encode_signal(rid, to, payload) == cp.frame(
            cp.encode_message(cp.Signal(rid, to, payload))
        )
        assert wire.encode_incoming(sender, payload) == cp.frame(
            cp.encode_message(cp.Incoming(sender, payload))
        )
        assert wire.encode_forward(rid, sender, to, payload) == cp.frame(
            fed.encode_message(fed.Forward(rid, sender, to, payload))
        )
        assert wire.encode_status(False, rid, int(status)) == cp.frame(
            cp.encode_message(cp.SignalSent(rid, status))
        )
        assert wire.encode_status(True, rid, int(status)) == cp.frame(
            fed.encode_message(fed.Forwarded(rid, status))
        )


@pytest.mark.parametrize("wire", [PURE, NATIVE], ids=["pure", "native"])
def test_encoders_refuse_what_the_protocols_refuse(wire: object) -> None:
    assert isinstance(wire, type(PURE))
    peer = b"\x00\x02ab"
    with pytest.raises(ValueError, match="request ID"):
        wire.encode_signal(MAX_RID + 1, peer, b"")
    with pytest.raises(ValueError, match="request ID"):
        wire.encode_forward(-1, peer, peer, b"")
    with pytest.raises(ValueError, match="status"):
        wire.encode_status(True, 1, 2)
    with pytest.raises(ValueError, match="too long"):
        wire.encode_incoming(peer, bytes(65537))
    # Same error types on both backends (the native binding takes i128 / u64 / bytes).
    with pytest.raises(OverflowError):
        wire.encode_signal(1 << 127, peer, b"")
    with pytest.raises(OverflowError):
        wire.encode_status(False, 1, 1 << 127)
    with pytest.raises(OverflowError):
        wire.encode_forward(-(1 << 127) - 1, peer, peer, b"")
    with pytest.raises(ValueError, match="request ID"):
        wire.encode_status(False, (1 << 127) - 1, 0)
    with pytest.raises(OverflowError):
        wire.split_frames(b"", -1)
    with pytest.raises(OverflowError):
        wire.split_frames(b"", 1 << 64)
    loose: Any = wire  # wrong argument types on purpose
    with pytest.raises(TypeError):
        loose.split_frames(b"", 1.0)
    with pytest.raises(TypeError):
        loose.encode_signal(1, bytearray(peer), b"")
    with pytest.raises(TypeError):
        loose.encode_incoming(peer, memoryview(b"x"))
    with pytest.raises(TypeError):
        loose.encode_forward(1.0, peer, peer, b"")
    with pytest.raises(TypeError):
        loose.parse_signal_path(bytearray(b"\x84\x01\x06\x00\x00"), False)
    with pytest.raises(TypeError):
        loose.parse_signal_path(b"\x84\x01\x06\x00\x00", 1)
    with pytest.raises(TypeError):
        loose.split_frames(bytearray(b"\x01a"), 10)


def _outcome(decode: Callable[[bytes], object], body: bytes) -> object:
    """The decoded message, or the text of the DecodeError."""
    try:
        return decode(body)
    except DecodeError as exc:
        return f"DecodeError: {exc}"


@settings(max_examples=800, deadline=None)
@given(
    st.one_of(
        mutated(client_messages, False),
        st.builds(cp.encode_message, client_messages),
        st.binary(max_size=60),
    ),
    st.one_of(
        mutated(federation_messages, True),
        st.builds(fed.encode_message, federation_messages),
        st.binary(max_size=60),
    ),
)
def test_fast_decoders_decode_or_refuse_exactly_as_the_general_ones(
    client_body: bytes, federation_body: bytes
) -> None:
    """What the channels use (``decode_message_fast``) gives the same message, or the
    same ``DecodeError``, as ``decode_message`` on the active backend."""
    for body, fast, general in (
        (client_body, cp.decode_message_fast, cp.decode_message),
        (federation_body, fed.decode_message_fast, fed.decode_message),
    ):
        expected = _outcome(general, body)
        assert _outcome(fast, body) == expected


@settings(max_examples=300, deadline=None)
@given(client_messages, federation_messages)
def test_fast_framers_build_the_general_frames(
    client_message: cp.ClientMessage, federation_message: fed.FederationMessage
) -> None:
    built = cp.frame_message_fast(client_message)
    assert built is None or built == cp.frame(cp.encode_message(client_message))
    built = fed.frame_message_fast(federation_message)
    assert built is None or built == cp.frame(fed.encode_message(federation_message))
    big = cp.Signal(1, b"\x00\x01a", bytes(cp.MAX_PAYLOAD + 1))
    assert cp.frame_message_fast(big) is None  # the general path checks the frame size


def _split_outcome(wire: object, data: bytes, max_frame: int) -> object:
    assert isinstance(wire, type(PURE))
    try:
        return wire.split_frames(data, max_frame)
    except DecodeError as exc:
        return f"DecodeError: {exc}"


@settings(max_examples=800, deadline=None)
@given(
    st.lists(st.binary(max_size=300), max_size=8),
    st.integers(0, 2000),
    st.binary(max_size=12),
    st.integers(0, 400),
)
def test_frames_split_alike_on_both_backends(
    bodies: list[bytes], cut: int, tail: bytes, max_frame: int
) -> None:
    stream = b"".join(cp.frame(body) for body in bodies)
    for data in (stream, stream[:cut], stream + tail, tail + stream):
        outcome = _split_outcome(PURE, data, max_frame)
        assert _split_outcome(NATIVE, data, max_frame) == outcome
    # Whole frames under the limit come back as they were sent, in any chunking.
    if all(len(body) <= max_frame for body in bodies):
        decoder = cp.FrameDecoder(max_frame)
        received = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert received == bodies
        assert decoder.buffered == 0
