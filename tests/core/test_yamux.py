"""Tests of the sans-I/O yamux engine on both backends: engines back to back, hand-made frames."""

from __future__ import annotations

import array
import struct

import pytest

from neonet.core import backend as backend_module
from neonet.core.backend import Implementation
from neonet.core.errors import LimitExceededError, LocalProtocolError, RemoteProtocolError
from neonet.core.yamux import (
    MAX_QUEUED_REPLIES,
    DataReceived,
    GoAwayReceived,
    PongReceived,
    SendWindowIncreased,
    StreamAcknowledged,
    StreamClosed,
    StreamEnded,
    StreamOpened,
    StreamReset,
    YamuxConfig,
    YamuxEngine,
    YamuxEvent,
)

KIB = 1024
WINDOW = 256 * KIB
DATA, WINDOW_UPDATE, PING, GO_AWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 1, 2, 4, 8


def frame(frame_type: int, flags: int, stream_id: int, length: int, payload: bytes = b"") -> bytes:
    """Encode one frame independently of the engine (big-endian 12-byte header)."""
    return struct.pack(">BBHII", 0, frame_type, flags, stream_id, length) + payload


def data_frame(stream_id: int, payload: bytes, flags: int = 0) -> bytes:
    return frame(DATA, flags, stream_id, len(payload), payload)


def frames(data: bytes) -> list[tuple[int, int, int, int, bytes]]:
    """Decode a byte string into (type, flags, stream_id, length, payload) tuples."""
    out = []
    position = 0
    while position < len(data):
        version, frame_type, flags, stream_id, length = struct.unpack_from(">BBHII", data, position)
        assert version == 0
        position += 12
        payload = b""
        if frame_type == DATA:
            payload = data[position : position + length]
            position += length
        out.append((frame_type, flags, stream_id, length, payload))
    assert position == len(data)
    return out


class Link:
    """A client and a server engine joined by an in-memory wire."""

    def __init__(
        self,
        backend: Implementation,
        client_config: YamuxConfig | None = None,
        server_config: YamuxConfig | None = None,
    ) -> None:
        self.client: YamuxEngine = backend.YamuxConnection(is_client=True, config=client_config)
        self.server: YamuxEngine = backend.YamuxConnection(is_client=False, config=server_config)

    def pump(self) -> tuple[list[YamuxEvent], list[YamuxEvent]]:
        """Shuttle bytes until both sides are quiet; return (client events, server events)."""
        client_events: list[YamuxEvent] = []
        server_events: list[YamuxEvent] = []
        for _ in range(1000):
            to_server = self.client.data_to_send()
            to_client = self.server.data_to_send()
            if not to_server and not to_client:
                return client_events, server_events
            if to_server:
                server_events += self.server.receive_data(to_server)
            if to_client:
                client_events += self.client.receive_data(to_client)
        raise AssertionError("the link did not settle")

    def open(self) -> int:
        stream_id = self.client.open_stream()
        client_events, server_events = self.pump()
        assert server_events == [StreamOpened(stream_id)]
        assert client_events == [StreamAcknowledged(stream_id)]
        return stream_id


def received(events: list[YamuxEvent], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


def of_type(events: list[YamuxEvent], kind: type) -> list[YamuxEvent]:
    return [event for event in events if isinstance(event, kind)]


# --- opening -----------------------------------------------------------------------------


def test_syn_is_a_window_update_with_the_first_odd_id(backend: Implementation) -> None:
    client = backend.YamuxConnection(is_client=True)
    assert client.open_stream() == 1
    assert client.open_stream() == 3
    assert client.data_to_send() == frame(WINDOW_UPDATE, SYN, 1, 0) + frame(
        WINDOW_UPDATE, SYN, 3, 0
    )
    server = backend.YamuxConnection(is_client=False)
    assert server.open_stream() == 2


def test_open_syn_ack_and_backlog(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.client.open_stream()
    assert link.client.statistics().ack_backlog == 1
    assert link.server.receive_data(link.client.data_to_send()) == [StreamOpened(stream_id)]
    ack = link.server.data_to_send()
    assert ack == frame(WINDOW_UPDATE, ACK, stream_id, 0)
    assert link.client.receive_data(ack) == [StreamAcknowledged(stream_id)]
    assert link.client.receive_data(ack) == []  # a second ACK means nothing
    stats = link.client.statistics()
    assert stats.ack_backlog == 0
    assert stats.open_streams == stats.outbound_streams == 1
    assert link.server.statistics().inbound_streams == 1


def test_larger_initial_window_is_advertised_on_syn_and_ack(backend: Implementation) -> None:
    config = YamuxConfig(initial_window=1024 * KIB)
    link = Link(backend, config, config)
    stream_id = link.client.open_stream()
    assert frames(link.client.data_to_send()) == [(WINDOW_UPDATE, SYN, 1, 768 * KIB, b"")]
    link.server.receive_data(frame(WINDOW_UPDATE, SYN, 1, 768 * KIB))
    assert link.server.send_window(stream_id) == 1024 * KIB
    assert frames(link.server.data_to_send()) == [(WINDOW_UPDATE, ACK, 1, 768 * KIB, b"")]
    link.client.receive_data(frame(WINDOW_UPDATE, ACK, 1, 768 * KIB))
    assert link.client.send_window(stream_id) == 1024 * KIB


def test_data_before_the_ack_and_lazy_ack_on_data(backend: Implementation) -> None:
    # js-yamux ACKs lazily, with its first data frame.
    client = backend.YamuxConnection(is_client=True)
    stream_id = client.open_stream()
    assert client.send_data(stream_id, b"hello") == 5
    client.data_to_send()
    events = client.receive_data(data_frame(stream_id, b"hi", flags=ACK))
    assert events == [StreamAcknowledged(stream_id), DataReceived(stream_id, b"hi")]


def test_syn_carrying_data_and_fin(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    events = server.receive_data(data_frame(1, b"request", flags=SYN | FIN))
    assert events == [StreamOpened(1), DataReceived(1, b"request"), StreamEnded(1)]
    assert server.send_data(1, b"response") == 8
    server.close_stream(1)
    assert not server.stream_is_open(1)
    # The queued ACK rides on the response's data frame; FIN always goes alone (js-libp2p
    # lost the data of frames that also carried FIN).
    assert frames(server.data_to_send()) == [
        (DATA, ACK, 1, 8, b"response"),
        (WINDOW_UPDATE, FIN, 1, 0, b""),
    ]
    # Our own close released it: StreamClosed leads the next batch of events.
    assert server.receive_data(b"") == [StreamClosed(1)]


def test_queued_syn_merges_into_the_data_frame_and_fin_goes_alone(backend: Implementation) -> None:
    client = backend.YamuxConnection(is_client=True)
    first = client.open_stream()
    client.send_data(first, b"a" * 10)
    client.send_data(first, b"b")
    client.close_stream(first)
    second = client.open_stream()
    client.close_stream(second)
    assert frames(client.data_to_send()) == [
        (DATA, SYN, first, 10, b"a" * 10),
        (DATA, 0, first, 1, b"b"),
        (WINDOW_UPDATE, FIN, first, 0, b""),
        (WINDOW_UPDATE, SYN, second, 0, b""),
        (WINDOW_UPDATE, FIN, second, 0, b""),
    ]


def test_frames_merge_only_while_still_last_in_the_queue(backend: Implementation) -> None:
    client = backend.YamuxConnection(is_client=True)
    first = client.open_stream()
    second = client.open_stream()
    client.send_data(first, b"x")  # the SYN of `first` is no longer last: sent as is
    client.ping(5)
    client.close_stream(first)  # a ping came after the data: FIN goes on its own
    assert frames(client.data_to_send()) == [
        (WINDOW_UPDATE, SYN, first, 0, b""),
        (WINDOW_UPDATE, SYN, second, 0, b""),
        (DATA, 0, first, 1, b"x"),
        (PING, SYN, 0, 5, b""),
        (WINDOW_UPDATE, FIN, first, 0, b""),
    ]
    client.send_data(second, b"y")
    client.data_to_send()
    client.close_stream(second)  # nothing merges across data_to_send()
    assert frames(client.data_to_send()) == [(WINDOW_UPDATE, FIN, second, 0, b"")]


def test_syn_with_extra_window_is_not_merged_into_data(backend: Implementation) -> None:
    client = backend.YamuxConnection(is_client=True, config=YamuxConfig(initial_window=2 * WINDOW))
    stream_id = client.open_stream()
    client.send_data(stream_id, memoryview(b"abc"))
    client.close_stream(stream_id)
    assert frames(client.data_to_send()) == [
        (WINDOW_UPDATE, SYN, stream_id, WINDOW, b""),
        (DATA, 0, stream_id, 3, b"abc"),
        (WINDOW_UPDATE, FIN, stream_id, 0, b""),
    ]


def test_mutable_input_is_copied_and_bytes_are_not_corrupted(backend: Implementation) -> None:
    client = backend.YamuxConnection(is_client=True, config=YamuxConfig(max_frame_payload=2))
    stream_id = client.open_stream()
    buffer = bytearray(b"abcde")
    assert client.send_data(stream_id, buffer) == 5
    buffer[:] = b"XXXXX"
    decoded = frames(client.data_to_send())
    assert b"".join(payload for *_, payload in decoded) == b"abcde"
    assert [flags for _, flags, *_ in decoded] == [SYN, 0, 0]


def test_syn_with_rst_opens_nothing_and_uses_up_the_id(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    assert server.receive_data(frame(WINDOW_UPDATE, SYN | RST, 1, 0)) == []
    assert server.data_to_send() == b""
    assert server.receive_data(frame(WINDOW_UPDATE, 0, 1, 5)) == []  # released: ignored
    with pytest.raises(RemoteProtocolError, match="reuses"):
        server.receive_data(frame(WINDOW_UPDATE, SYN, 1, 0))


def test_out_of_order_syns_are_accepted_once(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    events = server.receive_data(
        frame(WINDOW_UPDATE, SYN, 5, 0) + frame(WINDOW_UPDATE, SYN, 1, 0) + frame(DATA, SYN, 3, 0)
    )
    assert events == [StreamOpened(5), StreamOpened(1), StreamOpened(3)]
    with pytest.raises(RemoteProtocolError, match="open"):
        server.receive_data(frame(WINDOW_UPDATE, SYN, 3, 0))


def test_frame_for_a_skipped_id_without_syn_is_an_error(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    server.receive_data(frame(WINDOW_UPDATE, SYN, 5, 0))
    with pytest.raises(RemoteProtocolError, match="never opened"):
        server.receive_data(frame(WINDOW_UPDATE, 0, 3, 10))


def test_gaps_fill_in_any_order(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    server.receive_data(frame(WINDOW_UPDATE, SYN, 11, 0))  # skips 1, 3, 5, 7, 9
    for stream_id in (5, 1, 9, 7, 3):
        assert server.receive_data(frame(WINDOW_UPDATE, SYN, stream_id, 0)) == [
            StreamOpened(stream_id)
        ]
    for stream_id in (1, 5, 9):
        with pytest.raises(RemoteProtocolError, match="reuses"):
            backend.YamuxConnection(is_client=False).receive_data(
                frame(WINDOW_UPDATE, SYN, 11, 0)
                + frame(WINDOW_UPDATE, SYN | RST, stream_id, 0)
                + frame(WINDOW_UPDATE, SYN, stream_id, 0)
            )


def test_oldest_gaps_are_forgotten_first(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False, config=YamuxConfig(max_streams=2))
    for stream_id in (3, 7, 11):  # gaps {1}, {5}, {9}: one too many, so {1} is forgotten
        server.receive_data(frame(WINDOW_UPDATE, SYN | RST, stream_id, 0))
    assert server.receive_data(frame(WINDOW_UPDATE, SYN, 5, 0)) == [StreamOpened(5)]
    with pytest.raises(RemoteProtocolError, match="reuses"):
        server.receive_data(frame(WINDOW_UPDATE, SYN, 1, 0))


def test_splitting_a_gap_also_respects_the_bound(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False, config=YamuxConfig(max_streams=1))
    server.receive_data(frame(WINDOW_UPDATE, SYN | RST, 9, 0))  # gap {1..7}
    server.receive_data(frame(WINDOW_UPDATE, SYN | RST, 3, 0))  # {1}, {5, 7}: {1} forgotten
    assert server.receive_data(frame(WINDOW_UPDATE, SYN | RST, 7, 0)) == []
    assert server.receive_data(frame(WINDOW_UPDATE, SYN | RST, 5, 0)) == []
    with pytest.raises(RemoteProtocolError, match="reuses"):
        server.receive_data(frame(WINDOW_UPDATE, SYN | RST, 1, 0))


def test_huge_id_jump_is_cheap(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    assert server.receive_data(frame(WINDOW_UPDATE, SYN, 0xFFFFFFFF, 0)) == [
        StreamOpened(0xFFFFFFFF)
    ]
    assert server.receive_data(frame(WINDOW_UPDATE, SYN, 0xFFFFFFFD, 0)) == [
        StreamOpened(0xFFFFFFFD)
    ]


# --- data and closing --------------------------------------------------------------------


def test_data_both_ways(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    assert link.client.send_data(stream_id, b"ping") == 4
    _, server_events = link.pump()
    assert server_events == [DataReceived(stream_id, b"ping")]
    assert link.server.send_data(stream_id, memoryview(b"pong")) == 4
    client_events, _ = link.pump()
    assert client_events == [DataReceived(stream_id, b"pong")]


def test_half_close_client_first(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    link.client.send_data(stream_id, b"request")
    link.client.close_stream(stream_id)
    with pytest.raises(LocalProtocolError):
        link.client.send_data(stream_id, b"more")
    assert link.client.send_window(stream_id) == 0
    _, server_events = link.pump()
    assert server_events == [DataReceived(stream_id, b"request"), StreamEnded(stream_id)]
    link.server.send_data(stream_id, b"response")
    link.server.close_stream(stream_id)
    client_events, server_events = link.pump()
    assert client_events == [
        DataReceived(stream_id, b"response"),
        StreamEnded(stream_id),
        StreamClosed(stream_id),
    ]
    assert not link.client.stream_is_open(stream_id)
    assert not link.server.stream_is_open(stream_id)
    # The server released the stream itself; it hears about it with its next input.
    assert server_events == []
    assert link.server.statistics().open_streams == 1
    assert link.server.receive_data(b"") == [StreamClosed(stream_id)]
    assert link.server.statistics().open_streams == 0
    assert link.client.statistics().open_streams == 0


def test_half_close_server_first(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    link.server.close_stream(stream_id)
    client_events, _ = link.pump()
    assert client_events == [StreamEnded(stream_id)]
    # The client can still write after the server's FIN, and the server still reads.
    assert link.client.send_data(stream_id, b"late") == 4
    link.client.close_stream(stream_id)
    client_events, server_events = link.pump()
    assert server_events == [
        DataReceived(stream_id, b"late"),
        StreamEnded(stream_id),
        StreamClosed(stream_id),
    ]
    # The client released the stream itself; it hears about it with its next input.
    assert client_events == []
    assert link.client.receive_data(b"") == [StreamClosed(stream_id)]


def test_close_twice_is_a_local_error_but_close_after_release_is_a_no_op(
    backend: Implementation,
) -> None:
    link = Link(backend)
    stream_id = link.open()
    link.client.close_stream(stream_id)
    with pytest.raises(LocalProtocolError, match="already closed"):
        link.client.close_stream(stream_id)
    link.server.reset_stream(stream_id)
    link.pump()
    link.client.close_stream(stream_id)
    link.client.reset_stream(stream_id)
    assert link.client.data_to_send() == b""
    with pytest.raises(LocalProtocolError, match="never opened"):
        link.client.close_stream(99)


def test_reset_by_the_client(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    link.server.send_data(stream_id, b"in flight")  # crosses the RST on the wire
    link.client.reset_stream(stream_id)
    with pytest.raises(LocalProtocolError):
        link.client.send_data(stream_id, b"x")
    client_events, server_events = link.pump()
    assert server_events == [StreamReset(stream_id), StreamClosed(stream_id)]
    # The data in flight for a stream we reset is dropped silently.
    assert client_events == [StreamClosed(stream_id)]
    with pytest.raises(LocalProtocolError):
        link.server.send_data(stream_id, b"x")


def test_reset_before_ack_rejects_the_stream(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.client.open_stream()
    link.client.send_data(stream_id, b"early")
    client = link.client
    client.data_to_send()
    events = client.receive_data(frame(WINDOW_UPDATE, RST, stream_id, 0))
    assert events == [StreamReset(stream_id), StreamClosed(stream_id)]
    assert client.statistics().ack_backlog == 0


def test_data_after_the_peers_fin_resets_only_that_stream(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    server.receive_data(frame(WINDOW_UPDATE, SYN, 1, 0) + frame(WINDOW_UPDATE, SYN, 3, 0))
    server.receive_data(frame(WINDOW_UPDATE, FIN, 1, 0))
    server.data_to_send()
    events = server.receive_data(data_frame(1, b"too late") + data_frame(3, b"fine"))
    assert events == [StreamReset(1), StreamClosed(1), DataReceived(3, b"fine")]
    assert server.data_to_send() == frame(WINDOW_UPDATE, RST, 1, 0)
    # Whatever else arrives for the reset stream is in flight: ignored.
    assert server.receive_data(data_frame(1, b"more")) == []


def test_data_with_flags_after_the_peers_fin_resets_the_stream(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    server.receive_data(frame(WINDOW_UPDATE, SYN | FIN, 1, 0))
    assert server.receive_data(data_frame(1, b"x", flags=ACK)) == [StreamReset(1), StreamClosed(1)]


def test_second_fin_resets_the_stream(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    server.receive_data(frame(WINDOW_UPDATE, SYN | FIN, 1, 0))
    events = server.receive_data(frame(WINDOW_UPDATE, FIN, 1, 0))
    assert events == [StreamReset(1), StreamClosed(1)]


def test_rst_frame_discards_its_payload(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    server.receive_data(frame(WINDOW_UPDATE, SYN, 1, 0))
    assert server.receive_data(data_frame(1, b"junk", flags=RST)) == [
        StreamReset(1),
        StreamClosed(1),
    ]


def test_large_writes_are_split_into_frames(backend: Implementation) -> None:
    config = YamuxConfig(max_frame_payload=1000)
    client = backend.YamuxConnection(is_client=True, config=config)
    stream_id = client.open_stream()
    client.data_to_send()
    payload = bytes(range(256)) * 10
    assert client.send_data(stream_id, payload) == 2560
    decoded = frames(client.data_to_send())
    assert [length for _, _, _, length, _ in decoded] == [1000, 1000, 560]
    assert b"".join(p for *_, p in decoded) == payload


def test_stream_ids_run_out() -> None:
    # Pure only: reaching the end means skipping ahead through a private attribute. The
    # Rust engine has the same check and its own test (yamux.rs: stream_ids_run_out).
    pure = backend_module.implementation("pure")
    client = pure.YamuxConnection(is_client=True, config=YamuxConfig(max_ack_backlog=1000))
    client._next_outbound_id = 0xFFFFFFFD
    assert client.open_stream() == 0xFFFFFFFD
    assert client.open_stream() == 0xFFFFFFFF
    with pytest.raises(LimitExceededError, match="ids"):
        client.open_stream()


def test_empty_write_queues_nothing(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    assert link.client.send_data(stream_id, b"") == 0
    assert link.client.data_to_send() == b""


def test_stream_is_open_and_unknown_ids(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    assert link.client.stream_is_open(stream_id)
    assert not link.client.stream_is_open(stream_id + 2)
    link.client.reset_stream(stream_id)
    assert link.client.send_window(stream_id) == 0
    with pytest.raises(LocalProtocolError, match="never opened"):
        link.client.send_data(stream_id + 2, b"x")
    with pytest.raises(LocalProtocolError, match="never opened"):
        link.client.send_window(2)
    with pytest.raises(LocalProtocolError, match="invalid"):
        link.client.consume(0, 1)


# --- flow control ------------------------------------------------------------------------


def test_sender_blocks_at_the_window_and_resumes_after_consume(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    blob = b"x" * (WINDOW + 1000)
    assert link.client.send_window(stream_id) == WINDOW
    assert link.client.send_data(stream_id, blob) == WINDOW
    assert link.client.send_data(stream_id, b"more") == 0
    assert link.client.send_window(stream_id) == 0
    _, server_events = link.pump()
    assert len(received(server_events, stream_id)) == WINDOW
    # Consuming less than half of the window sends no update.
    link.server.consume(stream_id, WINDOW // 2 - 1)
    assert link.server.data_to_send() == b""
    link.server.consume(stream_id, 1)
    client_events, _ = link.pump()
    assert client_events == [SendWindowIncreased(stream_id)]
    assert link.client.send_window(stream_id) > 0
    assert link.client.send_data(stream_id, blob[WINDOW:]) == 1000


def test_window_updates_are_not_sent_per_byte(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    link.client.send_data(stream_id, b"x" * WINDOW)
    link.pump()
    for _ in range(WINDOW):
        link.server.consume(stream_id, 1)
    updates = frames(link.server.data_to_send())
    assert 1 <= len(updates) <= 2
    assert all(frame_type == WINDOW_UPDATE for frame_type, *_ in updates)
    assert sum(length for _, _, _, length, _ in updates) >= WINDOW


def test_window_grows_when_the_peer_stalls_on_it(backend: Implementation) -> None:
    config = YamuxConfig(max_receive_window=1024 * KIB)
    link = Link(backend, config, config)
    stream_id = link.open()
    grants = []
    for _ in range(6):
        window = link.client.send_window(stream_id)
        grants.append(window)
        assert link.client.send_data(stream_id, b"x" * window) == window
        _, server_events = link.pump()
        link.server.consume(stream_id, len(received(server_events, stream_id)))
        link.pump()
    # 256 KiB, then doubled to 512 KiB, then to the 1 MiB cap.
    assert grants == [WINDOW, 2 * WINDOW, 4 * WINDOW, 4 * WINDOW, 4 * WINDOW, 4 * WINDOW]


def test_a_syn_frame_that_fills_the_window_also_counts_as_a_stall(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    server.receive_data(data_frame(1, b"x" * WINDOW, flags=SYN))
    server.data_to_send()
    server.consume(1, WINDOW // 2)
    # Doubled: 512 KiB target, 128 KiB still unconsumed, so 384 KiB of credit.
    assert server.data_to_send() == frame(WINDOW_UPDATE, 0, 1, 384 * KIB)


def test_window_does_not_grow_when_the_peer_never_stalls(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    for _ in range(8):
        assert link.client.send_data(stream_id, b"x" * (WINDOW // 2)) == WINDOW // 2
        _, server_events = link.pump()
        link.server.consume(stream_id, len(received(server_events, stream_id)))
        link.pump()
        assert link.client.send_window(stream_id) == WINDOW


def test_no_window_update_after_the_peers_fin(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    link.client.send_data(stream_id, b"x" * WINDOW)
    link.client.close_stream(stream_id)
    link.pump()
    link.server.consume(stream_id, WINDOW)
    assert link.server.data_to_send() == b""


def test_consume_more_than_delivered_is_a_local_error(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    link.client.send_data(stream_id, b"abc")
    link.pump()
    with pytest.raises(LocalProtocolError, match="unconsumed"):
        link.server.consume(stream_id, 4)
    link.server.consume(stream_id, 3)
    link.client.reset_stream(stream_id)
    link.pump()
    link.server.consume(stream_id, 1000)  # released: ignored


def test_data_beyond_the_window_is_a_connection_error(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    server = link.server
    with pytest.raises(RemoteProtocolError, match="window") as error:
        server.receive_data(data_frame(stream_id, b"x" * (WINDOW + 1)))
    assert error.value.code == 1
    assert server.data_to_send() == frame(GO_AWAY, 0, 0, 1)
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        server.open_stream()


def test_oversized_data_header_is_refused_before_the_payload_arrives(
    backend: Implementation,
) -> None:
    server = backend.YamuxConnection(is_client=False)
    server.receive_data(frame(WINDOW_UPDATE, SYN, 1, 0))
    with pytest.raises(RemoteProtocolError, match="window"):
        server.receive_data(frame(DATA, 0, 1, WINDOW + 1)[:12])
    assert server.statistics().partial_frame_bytes <= 12


@pytest.mark.parametrize("split", [0, 5])
def test_oversized_syn_data_frame_is_refused_early(backend: Implementation, split: int) -> None:
    server = backend.YamuxConnection(is_client=False)
    header = frame(DATA, SYN, 1, WINDOW + 1)
    if split:
        server.receive_data(header[:split])
    with pytest.raises(RemoteProtocolError, match="window"):
        server.receive_data(header[split:])


def test_send_window_overflow_is_a_connection_error(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    with pytest.raises(RemoteProtocolError, match="2\\*\\*32"):
        link.client.receive_data(frame(WINDOW_UPDATE, 0, stream_id, 0xFFFFFFFF))


# --- ping and GoAway ---------------------------------------------------------------------


def test_ping_pong(backend: Implementation) -> None:
    link = Link(backend)
    link.client.ping(0xDEADBEEF)
    assert link.client.data_to_send() == frame(PING, SYN, 0, 0xDEADBEEF)
    link.client.ping(7)
    client_events, server_events = link.pump()
    assert server_events == []
    assert client_events == [PongReceived(7)]
    link.client.ping(1)
    link.server.receive_data(link.client.data_to_send())
    assert link.server.data_to_send() == frame(PING, ACK, 0, 1)
    with pytest.raises(LocalProtocolError):
        link.client.ping(1 << 32)


def test_ping_flood_without_reading_is_bounded(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    pings = frame(PING, SYN, 0, 1) * MAX_QUEUED_REPLIES
    server.receive_data(pings)
    assert len(server.data_to_send()) == 12 * MAX_QUEUED_REPLIES  # reading resets the budget
    server.receive_data(pings)
    with pytest.raises(RemoteProtocolError, match="replies"):
        server.receive_data(frame(PING, SYN, 0, 1))


def test_go_away_received(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    link.server.go_away()
    client_events, _ = link.pump()
    assert client_events == [GoAwayReceived(0)]
    with pytest.raises(LocalProtocolError, match="GoAway"):
        link.client.open_stream()
    # Existing streams keep working.
    link.client.send_data(stream_id, b"still here")
    _, server_events = link.pump()
    assert server_events == [DataReceived(stream_id, b"still here")]


def test_after_our_go_away_inbound_syns_are_refused(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.client.open_stream()
    link.server.go_away(2)
    client_events, server_events = link.pump()
    assert server_events == []
    assert client_events == [GoAwayReceived(2), StreamReset(stream_id), StreamClosed(stream_id)]
    with pytest.raises(LocalProtocolError):
        link.server.open_stream()
    with pytest.raises(LocalProtocolError, match="already"):
        link.server.go_away()
    with pytest.raises(LocalProtocolError, match="32 bits"):
        link.client.go_away(-1)


def test_ping_and_go_away_must_use_stream_zero(backend: Implementation) -> None:
    with pytest.raises(RemoteProtocolError, match="ping"):
        backend.YamuxConnection(is_client=False).receive_data(frame(PING, SYN, 1, 0))
    with pytest.raises(RemoteProtocolError, match="GoAway"):
        backend.YamuxConnection(is_client=False).receive_data(frame(GO_AWAY, 0, 1, 0))
    with pytest.raises(RemoteProtocolError, match="stream 0"):
        backend.YamuxConnection(is_client=False).receive_data(frame(WINDOW_UPDATE, SYN, 0, 0))


# --- limits ------------------------------------------------------------------------------


def test_max_streams_refuses_only_the_extra_stream(backend: Implementation) -> None:
    link = Link(backend, server_config=YamuxConfig(max_streams=2))
    first, second, extra = (link.client.open_stream() for _ in range(3))
    client_events, server_events = link.pump()
    assert server_events == [StreamOpened(first), StreamOpened(second)]
    assert StreamReset(extra) in client_events
    assert StreamClosed(extra) in client_events
    for stream_id in (first, second):
        link.client.send_data(stream_id, b"ok")
    _, server_events = link.pump()
    assert server_events == [DataReceived(first, b"ok"), DataReceived(second, b"ok")]
    # Once a stream is finished, a new one fits again.
    link.client.reset_stream(first)
    link.pump()
    fourth = link.client.open_stream()
    _, server_events = link.pump()
    assert server_events == [StreamOpened(fourth)]


def test_max_streams_limits_our_own_opens(backend: Implementation) -> None:
    client = backend.YamuxConnection(is_client=True, config=YamuxConfig(max_streams=2))
    stream_id = client.open_stream()
    client.open_stream()
    with pytest.raises(LimitExceededError):
        client.open_stream()
    client.reset_stream(stream_id)
    # The slot stays held until StreamClosed has been reported.
    with pytest.raises(LimitExceededError):
        client.open_stream()
    assert client.receive_data(b"") == [StreamClosed(stream_id)]
    client.open_stream()


def test_ack_backlog_limit(backend: Implementation) -> None:
    link = Link(backend, client_config=YamuxConfig(max_ack_backlog=2))
    link.client.open_stream()
    link.client.open_stream()
    with pytest.raises(LimitExceededError, match="ACK"):
        link.client.open_stream()
    client_events, _ = link.pump()
    assert of_type(client_events, StreamAcknowledged) == [
        StreamAcknowledged(1),
        StreamAcknowledged(3),
    ]
    assert link.client.open_stream() == 5


def test_config_is_validated(backend: Implementation) -> None:
    with pytest.raises(ValueError, match="initial_window"):
        YamuxConfig(initial_window=1000)
    with pytest.raises(ValueError, match="max_receive_window"):
        YamuxConfig(initial_window=2 * WINDOW, max_receive_window=WINDOW)
    with pytest.raises(ValueError, match="max_streams"):
        YamuxConfig(max_streams=0)
    with pytest.raises(ValueError, match="max_frame_payload"):
        YamuxConfig(max_frame_payload=0)


# --- connection errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01" + frame(PING, SYN, 0, 0)[1:], "version"),
        (frame(4, 0, 0, 0), "unknown frame type"),
        (frame(WINDOW_UPDATE, SYN, 2, 0), "parity"),
        (frame(WINDOW_UPDATE, 0, 1, 0), "never opened"),
        (data_frame(7, b"x"), "never opened"),
        (data_frame(0, b"x"), "stream 0"),
    ],
)
def test_connection_errors_queue_go_away(
    backend: Implementation, data: bytes, message: str
) -> None:
    server = backend.YamuxConnection(is_client=False)
    with pytest.raises(RemoteProtocolError, match=message) as error:
        server.receive_data(data)
    assert error.value.code == 1
    assert server.data_to_send() == frame(GO_AWAY, 0, 0, 1)
    assert server.data_to_send() == b""
    with pytest.raises(LocalProtocolError):
        server.receive_data(frame(PING, SYN, 0, 0))


def test_a_failed_connection_refuses_every_command(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    with pytest.raises(RemoteProtocolError):
        link.server.receive_data(frame(7, 0, 0, 0))
    server = link.server
    for command in (
        lambda: server.receive_data(b""),
        server.open_stream,
        lambda: server.send_data(stream_id, b"x"),
        lambda: server.consume(stream_id, 0),
        lambda: server.close_stream(stream_id),
        lambda: server.reset_stream(stream_id),
        lambda: server.ping(1),
        server.go_away,
    ):
        with pytest.raises(LocalProtocolError, match="failed"):
            command()
    assert server.data_to_send() == frame(GO_AWAY, 0, 0, 1)
    assert server.statistics().open_streams == 1


def test_buffers_of_any_item_size_are_bytes(backend: Implementation) -> None:
    words = array.array("I", [0x01020304, 0x05060708])
    client = backend.YamuxConnection(is_client=True)
    stream_id = client.open_stream()
    assert client.send_data(stream_id, memoryview(words)) == 8
    wire = client.data_to_send()
    assert frames(wire)[-1][-1] == words.tobytes()
    server = backend.YamuxConnection(is_client=False)
    padded = wire + bytes(-len(wire) % 4)  # whole 4-byte items; the padding waits as partial
    events = server.receive_data(memoryview(array.array("I", padded)))
    assert events[1] == DataReceived(stream_id, words.tobytes())


def test_version_error_is_found_in_a_partial_header(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    server.receive_data(frame(PING, SYN, 0, 0)[:5])
    with pytest.raises(RemoteProtocolError, match="version"):
        server.receive_data(b"\x00" * 7 + b"\x01" + b"\x00" * 11)  # completes it, then version 1


def test_syn_reusing_a_live_or_released_id(backend: Implementation) -> None:
    link = Link(backend)
    stream_id = link.open()
    with pytest.raises(RemoteProtocolError, match="open"):
        link.server.receive_data(frame(WINDOW_UPDATE, SYN, stream_id, 0))
    link = Link(backend)
    stream_id = link.open()
    link.client.reset_stream(stream_id)
    link.pump()
    with pytest.raises(RemoteProtocolError, match="reuses"):
        link.server.receive_data(frame(WINDOW_UPDATE, SYN, stream_id, 0))


def test_adjacent_data_frames_of_a_stream_arrive_as_one_event(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    wire = (
        frame(WINDOW_UPDATE, SYN, 1, 0)
        + frame(WINDOW_UPDATE, SYN, 3, 0)
        + data_frame(1, b"a")
        + data_frame(1, b"b", flags=ACK)  # an ACK that means nothing still joins
        + data_frame(1, b"")
        + data_frame(1, b"c")
        + data_frame(3, b"x")
        + data_frame(1, b"d")
        + frame(PING, 0, 0, 1)
        + data_frame(1, b"e")
        + data_frame(1, b"f", flags=FIN)
    )
    assert server.receive_data(wire) == [
        StreamOpened(1),
        StreamOpened(3),
        DataReceived(1, b"abc"),
        DataReceived(3, b"x"),
        DataReceived(1, b"d"),
        PongReceived(1),
        DataReceived(1, b"ef"),
        StreamEnded(1),
    ]
    # Across calls nothing is joined: each call reports what it parsed.
    assert server.receive_data(data_frame(3, b"y")) == [DataReceived(3, b"y")]
    assert server.receive_data(data_frame(3, b"z")) == [DataReceived(3, b"z")]


def test_partial_frames_are_reassembled(backend: Implementation) -> None:
    server = backend.YamuxConnection(is_client=False)
    wire = frame(WINDOW_UPDATE, SYN, 1, 0) + data_frame(1, b"hello world") + frame(PING, 0, 0, 9)
    events: list[YamuxEvent] = []
    for index in range(len(wire)):
        events += server.receive_data(wire[index : index + 1])
    assert events == [StreamOpened(1), DataReceived(1, b"hello world"), PongReceived(9)]
    assert server.statistics().partial_frame_bytes == 0


def test_statistics_track_buffered_output(backend: Implementation) -> None:
    client = backend.YamuxConnection(is_client=True)
    client.open_stream()
    assert client.statistics().bytes_buffered == 12
    client.data_to_send()
    assert client.statistics().bytes_buffered == 0
