"""identify codec: framing modes, push merge, limits, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neonet.core.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from neonet.core.varint import decode_uvarint, encode_uvarint
from neonet.proto.identify import (
    MAX_MESSAGE_SIZE,
    MAX_MESSAGES_PER_STREAM,
    IdentifyInfo,
    IdentifyReader,
    _to_protobuf,
    decode_identify,
    encode_identify,
    merge_push,
)
from neonet.proto.pb import identify_pb2

# An Ed25519 PublicKey protobuf (KeyType=1, 32 key bytes), as real peers send.
ED25519_KEY = bytes.fromhex("08011220") + bytes(range(32))
IP4_TCP = bytes.fromhex("047f000001060fa1")  # /ip4/127.0.0.1/tcp/4001

FULL = IdentifyInfo(
    protocol_version="ipfs/0.1.0",
    agent_version="neonet/test",
    public_key=ED25519_KEY,
    listen_addrs=(IP4_TCP, bytes.fromhex("047f000001910203e8")),
    observed_addr=IP4_TCP,
    protocols=("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"),
    signed_peer_record=b"\x0a\x01envelope",
)


def read_all(stream: bytes, chunk: int | None = None) -> list[IdentifyInfo]:
    reader = IdentifyReader()
    step = chunk or max(len(stream), 1)
    infos = []
    for start in range(0, len(stream), step):
        infos += reader.receive_data(stream[start : start + step])
    return infos + reader.finish()


def bare(info: IdentifyInfo) -> bytes:
    """The unframed protobuf: our encoding without its length prefix."""
    encoded = encode_identify(info)
    length, offset = decode_uvarint(encoded)
    assert offset + length == len(encoded)
    return encoded[offset:]


def test_round_trip_and_wire_format() -> None:
    encoded = encode_identify(FULL)
    body = bare(FULL)
    assert encoded == encode_uvarint(len(body)) + body
    parsed = identify_pb2.Identify()
    parsed.ParseFromString(body)
    assert parsed.agentVersion == "neonet/test"
    assert list(parsed.listenAddrs) == list(FULL.listen_addrs)
    assert decode_identify(body) == FULL
    assert read_all(encoded) == [FULL]


def test_empty_record_round_trip() -> None:
    assert encode_identify(IdentifyInfo()) == b"\x00"
    assert read_all(b"\x00") == [IdentifyInfo()]


def test_absent_fields_stay_none() -> None:
    info = IdentifyInfo(protocols=("/a/1",))
    (decoded,) = read_all(encode_identify(info))
    assert decoded.agent_version is None and decoded.public_key is None
    assert decoded.observed_addr is None and decoded.signed_peer_record is None
    # Present but empty is kept apart from absent.
    (decoded,) = read_all(encode_identify(IdentifyInfo(agent_version="", public_key=b"")))
    assert decoded.agent_version == "" and decoded.public_key == b""


def test_several_framed_messages_byte_by_byte() -> None:
    # go-libp2p sends the signed peer record in a second message on the same stream.
    first = IdentifyInfo(agent_version="a", protocols=("/x",))
    second = IdentifyInfo(signed_peer_record=b"record")
    stream = encode_identify(first) + encode_identify(second)
    assert read_all(stream, chunk=1) == [first, second]


def test_framed_messages_are_yielded_before_eof() -> None:
    reader = IdentifyReader()
    assert reader.receive_data(encode_identify(FULL)) == [FULL]
    assert reader.finish() == []


def test_whole_stream_mode() -> None:
    body = bare(FULL)
    assert body[0] == 0x0A  # starts with the publicKey tag, as real peers' messages do
    reader = IdentifyReader()
    for start in range(0, len(body), 7):
        assert reader.receive_data(body[start : start + 7]) == []
    assert reader.finish() == [FULL]


@pytest.mark.parametrize(
    "info",
    [
        IdentifyInfo(listen_addrs=(IP4_TCP,), protocols=("/a",)),
        IdentifyInfo(protocols=("/ipfs/id/1.0.0",)),
        IdentifyInfo(observed_addr=IP4_TCP, agent_version="go-ipfs"),
        IdentifyInfo(public_key=bytes.fromhex("08021221") + b"\x02" + bytes(32)),
        IdentifyInfo(public_key=bytes.fromhex("080012ab02") + bytes(299)),
    ],
)
def test_whole_stream_mode_typical_leading_fields(info: IdentifyInfo) -> None:
    assert read_all(bare(info)) == [info]
    assert read_all(bare(info), chunk=1) == [info]


def test_empty_stream_has_no_message() -> None:
    assert IdentifyReader().finish() == []


def test_push_merge() -> None:
    push = IdentifyInfo(listen_addrs=(b"\x04\x0a\x00\x00\x01",), agent_version="new")
    merged = merge_push(FULL, push)
    assert merged.listen_addrs == push.listen_addrs
    assert merged.agent_version == "new"
    assert merged.protocols == FULL.protocols
    assert merged.public_key == FULL.public_key
    assert merged.signed_peer_record == FULL.signed_peer_record
    assert merge_push(FULL, IdentifyInfo()) == FULL
    assert merge_push(IdentifyInfo(), FULL) == FULL


def test_framed_message_cut_at_eof() -> None:
    encoded = encode_identify(FULL)
    reader = IdentifyReader()
    assert reader.receive_data(encoded + encoded[:5]) == [FULL]
    with pytest.raises(DecodeError, match="ended inside"):
        reader.finish()


def test_malformed_protobuf() -> None:
    with pytest.raises(DecodeError):
        read_all(b"\x0b")
    with pytest.raises(DecodeError):
        decode_identify(b"\x0a\x05ab")
    # After a good framed message, a bad one is an error at once, not at EOF.
    reader = IdentifyReader()
    with pytest.raises(DecodeError):
        reader.receive_data(encode_identify(FULL) + b"\x02\x0b\x0b")


def test_invalid_utf8_string() -> None:
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_identify(b"\x1a\x02\xff\xfe")
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_identify(b"\x32\x01\x80")


def test_oversize_is_refused() -> None:
    huge = IdentifyInfo(agent_version="x" * MAX_MESSAGE_SIZE)
    with pytest.raises(LocalProtocolError):
        encode_identify(huge)
    raw = identify_pb2.Identify(agentVersion="x" * MAX_MESSAGE_SIZE).SerializeToString()
    with pytest.raises(DecodeError):
        decode_identify(raw)
    # A framed length above the limit, after a good message: refused from the prefix.
    reader = IdentifyReader()
    with pytest.raises(DecodeError, match="exceeds"):
        reader.receive_data(encode_identify(FULL) + encode_uvarint(MAX_MESSAGE_SIZE + 1))
    # Undecided mode: buffering stops at the limit however the bytes arrive.
    reader = IdentifyReader()
    with pytest.raises(DecodeError, match="larger than"):
        for _ in range(MAX_MESSAGE_SIZE // 4096 + 2):
            reader.receive_data(encode_uvarint(MAX_MESSAGE_SIZE + 1) + bytes(4096))


def test_list_limits() -> None:
    too_many_addrs = identify_pb2.Identify(listenAddrs=[IP4_TCP] * 101).SerializeToString()
    with pytest.raises(DecodeError, match="addresses"):
        decode_identify(too_many_addrs)
    too_many_protocols = identify_pb2.Identify(protocols=["/p"] * 501).SerializeToString()
    with pytest.raises(DecodeError, match="protocols"):
        decode_identify(too_many_protocols)
    long_protocol = identify_pb2.Identify(protocols=["é" * 513]).SerializeToString()
    with pytest.raises(DecodeError, match="longer than 1024"):
        decode_identify(long_protocol)
    assert decode_identify(identify_pb2.Identify(protocols=["é" * 512]).SerializeToString())
    with pytest.raises(LocalProtocolError):
        encode_identify(IdentifyInfo(protocols=("/p",) * 501))
    with pytest.raises(LocalProtocolError):
        encode_identify(IdentifyInfo(listen_addrs=(IP4_TCP,) * 101))


def test_too_many_messages() -> None:
    stream = encode_identify(IdentifyInfo()) * (MAX_MESSAGES_PER_STREAM + 1)
    with pytest.raises(DecodeError, match="more than"):
        IdentifyReader().receive_data(stream)


def test_reader_used_after_finish() -> None:
    reader = IdentifyReader()
    reader.finish()
    with pytest.raises(LocalProtocolError):
        reader.receive_data(b"")


# --- Hypothesis -------------------------------------------------------------------------

texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30)
infos = st.builds(
    IdentifyInfo,
    protocol_version=st.none() | texts,
    agent_version=st.none() | texts,
    public_key=st.none() | st.binary(max_size=80),
    listen_addrs=st.lists(st.binary(max_size=30), max_size=5).map(tuple),
    observed_addr=st.none() | st.binary(max_size=30),
    protocols=st.lists(texts, max_size=5).map(tuple),
    signed_peer_record=st.none() | st.binary(max_size=60),
)


@settings(max_examples=300)
@given(st.lists(infos, min_size=1, max_size=3), st.data())
def test_framed_split_matches_whole(messages: list[IdentifyInfo], data: st.DataObject) -> None:
    stream = b"".join(encode_identify(info) for info in messages)
    reader = IdentifyReader()
    received: list[IdentifyInfo] = []
    rest = stream
    while rest:
        cut = data.draw(st.integers(min_value=1, max_value=len(rest)))
        received += reader.receive_data(rest[:cut])
        rest = rest[cut:]
    received += reader.finish()
    assert received == messages


@settings(max_examples=300)
@given(infos, st.integers(min_value=1, max_value=64))
def test_merge_push_round_trip(info: IdentifyInfo, chunk: int) -> None:
    (decoded,) = read_all(encode_identify(info), chunk=chunk)
    assert decoded == info
    assert merge_push(IdentifyInfo(), decoded) == info
    assert merge_push(info, IdentifyInfo()) == info


@settings(max_examples=500)
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=300))
def test_random_bytes_into_reader(data: bytes, chunk: int) -> None:
    reader = IdentifyReader()
    try:
        for start in range(0, len(data), chunk):
            for info in reader.receive_data(data[start : start + chunk]):
                assert isinstance(info, IdentifyInfo)
        reader.finish()
    except RemoteProtocolError:
        pass


# --- Earlier codec tests (kept from the first version of this file) -----------------------

INFO = IdentifyInfo(
    protocol_version="ipfs/0.1.0",
    agent_version="neonet/test",
    public_key=b"\x08\x01\x12\x20" + bytes(32),
    listen_addrs=(bytes.fromhex("047f000001060fa1"),),
    observed_addr=bytes.fromhex("047f000001060fa2"),
    protocols=("/ipfs/ping/1.0.0", "/ipfs/id/1.0.0"),
)


def test_length_prefixed_round_trip_in_pieces() -> None:
    encoded = encode_identify(INFO)
    reader = IdentifyReader()
    infos = []
    for index in range(len(encoded)):
        infos += reader.receive_data(encoded[index : index + 1])
    assert infos == [INFO]
    assert reader.finish() == []


def test_bare_protobuf_is_read_at_eof() -> None:
    reader = IdentifyReader()
    assert reader.receive_data(_to_protobuf(INFO).SerializeToString()) == []
    assert reader.finish() == [INFO]


def test_push_replaces_only_the_fields_it_carries() -> None:
    merged = merge_push(INFO, IdentifyInfo(protocols=("/new/1.0.0",)))
    assert merged.protocols == ("/new/1.0.0",)
    assert merged.agent_version == "neonet/test"


def test_limits() -> None:
    with pytest.raises(DecodeError, match="addresses"):
        # Our encoder refuses such a record, so frame an oversize protobuf by hand.
        message = _to_protobuf(IdentifyInfo(listen_addrs=(b"\x04\x01\x02\x03\x04",) * 101))
        raw = message.SerializeToString()
        IdentifyReader().receive_data(encode_uvarint(len(raw)) + raw)
    with pytest.raises(DecodeError):
        IdentifyReader().receive_data(b"\x01" * 70000)


@given(st.binary(max_size=500))
def test_fuzz_identify_reader(data: bytes) -> None:
    reader = IdentifyReader()
    try:
        reader.receive_data(data)
        reader.finish()
    except DecodeError:
        pass
