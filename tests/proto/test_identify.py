from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neonet.core.errors import DecodeError
from neonet.proto.identify import (
    IdentifyInfo,
    IdentifyReader,
    _to_protobuf,
    encode_identify,
    merge_push,
)

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
        IdentifyReader().receive_data(
            encode_identify(IdentifyInfo(listen_addrs=(b"\x04\x01\x02\x03\x04",) * 101))
        )
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
