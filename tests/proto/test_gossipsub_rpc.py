"""Pubsub RPC codec, framing, message IDs and StrictSign (neonet.proto.gossipsub_rpc)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core.errors import DecodeError, RemoteProtocolError
from neonet.core.keys import Ed25519Identity
from neonet.core.peer_id import PeerId
from neonet.core.varint import encode_uvarint
from neonet.proto.gossipsub_rpc import (
    SIGNING_PREFIX,
    Message,
    Prune,
    Rpc,
    RpcLimits,
    RpcReader,
    SignaturePolicy,
    decode_rpc,
    decode_rpcs,
    default_message_id,
    encode_rpc,
    frame,
    sign_message,
    verify_message,
)
from neonet.proto.pb import gossipsub_pb2 as pb

IDENTITY = Ed25519Identity.from_seed(bytes(range(32)))


def test_round_trip_of_every_field() -> None:
    message = sign_message(IDENTITY, "news", b"hello", 7)
    rpc = Rpc(subscriptions=[(True, "news"), (False, "old")], messages=[message])
    rpc.control.ihave.append(("news", [b"a", b"b"]))
    rpc.control.iwant.extend([b"c"])
    rpc.control.graft.append("news")
    rpc.control.prune.append(Prune("old", (b"peer1", b"peer2"), 60))
    rpc.control.idontwant.extend([b"d", b"e"])
    decoded = decode_rpc(encode_rpc(rpc))
    assert decoded.subscriptions == rpc.subscriptions
    assert decoded.messages == [message]
    assert decoded.control == rpc.control


def test_raw_messages_decode_like_messages() -> None:
    message = sign_message(IDENTITY, "news", b"x" * 300, 1)
    via_raw = encode_rpc(Rpc(raw_messages=[message.encode()], subscriptions=[(True, "t")]))
    assert decode_rpc(via_raw).messages == [message]
    assert decode_rpc(via_raw).subscriptions == [(True, "t")]


def test_wire_format_matches_the_spec_protobuf() -> None:
    """Field numbers as in pubsub/README.md: from=1, data=2, seqno=3, topic=4, signature=5."""
    message = sign_message(IDENTITY, "t", b"d", 1)
    encoded = message.encode()
    author = PeerId.from_public_key(IDENTITY.public_key).to_bytes()
    assert encoded.startswith(b"\x0a" + bytes([len(author)]) + author + b"\x12\x01d")
    assert b"\x1a\x08" + (1).to_bytes(8, "big") + b"\x22\x01t" in encoded
    assert message.key is None  # Ed25519 keys are inlined in the peer ID


def test_signature_covers_prefix_and_unsigned_fields() -> None:
    message = sign_message(IDENTITY, "t", b"payload", 42)
    unsigned = pb.Message()
    unsigned.__setattr__("from", message.from_peer)
    unsigned.data = b"payload"
    unsigned.seqno = (42).to_bytes(8, "big")
    unsigned.topic = "t"
    assert message.signature is not None
    assert IDENTITY.public_key.verify(
        message.signature, SIGNING_PREFIX + unsigned.SerializeToString()
    )
    assert verify_message(message, SignaturePolicy.STRICT_SIGN) is None
    assert default_message_id(message) == message.from_peer + (42).to_bytes(8, "big")  # type: ignore[operator]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"data": b"other"}, "bad signature"),
        ({"topic": "other"}, "bad signature"),
        ({"seqno": (43).to_bytes(8, "big")}, "bad signature"),
        ({"signature": None}, "missing signature"),
        ({"seqno": None}, "unsigned message (no from or seqno)"),
        ({"from_peer": b"\x00\x01"}, "bad author"),
        ({"key": Ed25519Identity.generate().public_key.to_protobuf()}, "key does not match from"),
    ],
)
def test_strict_sign_refuses_tampering(change: dict[str, object], reason: str) -> None:
    good = sign_message(IDENTITY, "t", b"payload", 42)
    fields = {
        "topic": good.topic,
        "data": good.data,
        "from_peer": good.from_peer,
        "seqno": good.seqno,
        "signature": good.signature,
        "key": good.key,
    }
    fields.update(change)
    problem = verify_message(Message(**fields), SignaturePolicy.STRICT_SIGN)  # type: ignore[arg-type]
    assert problem is not None and problem.startswith(reason)


def test_strict_no_sign() -> None:
    assert verify_message(Message("t", b"x"), SignaturePolicy.STRICT_NO_SIGN) is None
    signed = sign_message(IDENTITY, "t", b"x", 1)
    assert verify_message(signed, SignaturePolicy.STRICT_NO_SIGN) is not None
    assert verify_message(Message("t", b"x"), SignaturePolicy.STRICT_SIGN) is not None


def test_reader_splits_frames_across_reads() -> None:
    frames = [encode_rpc(Rpc(subscriptions=[(True, f"t{i}")])) for i in range(5)]
    stream = b"".join(frame(f) for f in frames)
    reader = RpcReader()
    found: list[bytes] = []
    for index in range(0, len(stream), 3):
        found.extend(reader.feed(stream[index : index + 3]))
    assert found == frames
    assert reader.pending() == 0


def test_reader_refuses_oversized_length() -> None:
    reader = RpcReader(max_rpc_size=100)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        reader.feed(encode_uvarint(101))


def test_limits_refuse_floods() -> None:
    rpc = Rpc()
    rpc.control.iwant.extend(bytes([i % 256, i // 256]) for i in range(11))
    encoded = encode_rpc(rpc)
    with pytest.raises(RemoteProtocolError, match="message IDs"):
        decode_rpc(encoded, RpcLimits(max_message_ids=10))
    rpc = Rpc(subscriptions=[(True, str(i)) for i in range(11)])
    with pytest.raises(RemoteProtocolError, match="subscriptions"):
        decode_rpc(encode_rpc(rpc), RpcLimits(max_subscriptions=10))
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        decode_rpc(b"\x00" * 101, RpcLimits(max_rpc_size=100))
    with pytest.raises(RemoteProtocolError, match="topic"):
        decode_rpc(encode_rpc(Rpc(subscriptions=[(True, "x" * 1025)])))


def test_message_without_topic_is_refused() -> None:
    raw = pb.RPC()
    raw.publish.add(data=b"x")
    with pytest.raises(RemoteProtocolError, match="topic"):
        decode_rpc(raw.SerializeToString())


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_decode_raises_only_remote_protocol_error(data: bytes) -> None:
    try:
        rpc = decode_rpc(data)
    except RemoteProtocolError:
        return
    # Whatever decodes must re-encode and decode to the same RPC.
    assert decode_rpc(encode_rpc(rpc)) == rpc


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8), st.binary(max_size=40))
def test_fuzz_reader(chunks: list[bytes], garbage: bytes) -> None:
    reader = RpcReader(max_rpc_size=1024)
    stream = b"".join(frame(chunk) for chunk in chunks)
    assert reader.feed(stream) == chunks
    try:
        for rpc in reader.feed(garbage):
            assert len(rpc) <= 1024
    except (DecodeError, RemoteProtocolError):
        pass


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=50), st.binary(max_size=200), st.integers(0, 2**64 - 1))
def test_fuzz_sign_verify(topic: str, data: bytes, seqno: int) -> None:
    message = sign_message(IDENTITY, topic, data, seqno)
    decoded = decode_rpc(encode_rpc(Rpc(messages=[message]))).messages[0]
    assert verify_message(decoded, SignaturePolicy.STRICT_SIGN) is None


def _lazy_view(rpc: Rpc) -> list[tuple[str, bytes, bytes, Message]]:
    return [(r.topic, r.from_peer, r.seqno, r.decode()) for r in rpc.received]


def test_lazy_decoding_reads_the_id_fields_and_forwards_the_bytes() -> None:
    first = sign_message(IDENTITY, "news", b"one", 1)
    second = Message(topic="other", data=b"two")  # no from, no seqno (StrictNoSign)
    encoded = encode_rpc(Rpc(messages=[first, second], subscriptions=[(True, "news")]))
    lazy = decode_rpc(encoded, lazy=True)
    assert lazy.messages == []
    assert lazy.subscriptions == [(True, "news")]
    assert _lazy_view(lazy) == [
        ("news", first.from_peer, first.seqno, first),
        ("other", b"", b"", second),
    ]
    assert lazy.received[0].from_peer + lazy.received[0].seqno == default_message_id(first)
    assert [r.encode() for r in lazy.received] == [first.encode(), second.encode()]
    assert not lazy.empty()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"data": b"x"}, "topic"),
        ({"topic": "t", "from": b"f" * 129}, "'from' too long"),
        ({"topic": "t", "seqno": b"s" * 65}, "seqno too long"),
        ({"topic": "t", "signature": b"s" * 1025}, "signature too long"),
        ({"topic": "t" * 1025}, "topic longer"),
    ],
)
def test_lazy_decoding_refuses_what_full_decoding_refuses(
    fields: dict[str, object], reason: str
) -> None:
    raw = pb.RPC()
    raw.publish.add(**fields)
    for lazy in (False, True):
        with pytest.raises(RemoteProtocolError, match=reason):
            decode_rpc(raw.SerializeToString(), lazy=lazy)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_lazy_decoding_agrees_with_full_decoding(data: bytes) -> None:
    try:
        full = decode_rpc(data)
    except RemoteProtocolError as exc:
        with pytest.raises(type(exc)):
            decode_rpc(data, lazy=True)
        return
    lazy = decode_rpc(data, lazy=True)
    assert [r.decode() for r in lazy.received] == full.messages
    assert (lazy.subscriptions, lazy.control) == (full.subscriptions, full.control)
    for received, message in zip(lazy.received, full.messages, strict=True):
        assert (received.topic, received.from_peer or None, received.seqno or None) == (
            message.topic,
            message.from_peer or None,
            message.seqno or None,
        )


_optional_bytes = st.none() | st.binary(max_size=70)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(
            Message,
            topic=st.text(max_size=20),
            data=st.binary(max_size=40),
            from_peer=_optional_bytes,
            seqno=_optional_bytes,
            signature=_optional_bytes,
            key=_optional_bytes,
        ),
        max_size=4,
    )
)
def test_fuzz_lazy_decoding_of_messages(messages: list[Message]) -> None:
    encoded = encode_rpc(Rpc(messages=messages))
    try:
        full = decode_rpc(encoded)
    except RemoteProtocolError as exc:
        with pytest.raises(type(exc)):
            decode_rpc(encoded, lazy=True)
        return
    lazy = decode_rpc(encoded, lazy=True)
    assert [r.decode() for r in lazy.received] == full.messages
    assert [
        decode_rpc(encode_rpc(Rpc(raw_messages=[r.encode()]))).messages[0] for r in lazy.received
    ] == full.messages
    assert [r.from_peer + r.seqno for r in lazy.received] == [
        default_message_id(m) for m in full.messages
    ]


def _received_messages(rpcs: list[Rpc]) -> list[Message]:
    return [received.decode() for rpc in rpcs for received in rpc.received]


def test_rpcs_of_one_read_carrying_only_messages_are_merged_in_order() -> None:
    messages = [sign_message(IDENTITY, "news", bytes([i]) * 10, i) for i in range(1, 7)]
    forwards = [encode_rpc(Rpc(raw_messages=[m.encode()])) for m in messages[:3]]
    graft = Rpc()
    graft.control.graft.append("news")
    encodings = [
        *forwards,
        encode_rpc(graft),
        encode_rpc(Rpc(messages=messages[3:5])),
        encode_rpc(Rpc(subscriptions=[(True, "x")], messages=[messages[5]])),
    ]
    rpcs = decode_rpcs(encodings)
    # The three forwards in one, the GRAFT alone, then the next messages-only RPC, then
    # the one with a subscription (not merged: it carries more than messages).
    assert [len(rpc.received) for rpc in rpcs] == [3, 0, 2, 1]
    assert rpcs[1].control.graft == ["news"]
    assert rpcs[3].subscriptions == [(True, "x")]
    assert _received_messages(rpcs) == messages
    # A merged run never holds more than max_messages.
    limited = decode_rpcs(forwards, RpcLimits(max_messages=2))
    assert [len(rpc.received) for rpc in limited] == [2, 1]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=60),
            st.lists(st.binary(max_size=30), max_size=3).map(
                lambda raws: b"".join(b"\x12" + encode_uvarint(len(r)) + r for r in raws)
            ),
        ),
        max_size=6,
    )
)
def test_fuzz_decode_rpcs_agrees_with_decoding_one_by_one(encodings: list[bytes]) -> None:
    try:
        one_by_one = [decode_rpc(encoded, lazy=True) for encoded in encodings]
    except RemoteProtocolError:
        with pytest.raises(RemoteProtocolError):
            decode_rpcs(encodings)
        return
    merged = decode_rpcs(encodings)
    assert _received_messages(merged) == _received_messages(one_by_one)
    assert [r.subscriptions for r in merged if r.subscriptions] == [
        r.subscriptions for r in one_by_one if r.subscriptions
    ]
    assert [r.control for r in merged if not r.control.empty()] == [
        r.control for r in one_by_one if not r.control.empty()
    ]
