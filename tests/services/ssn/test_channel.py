"""FramedChannel: requests answered through callbacks (``request_nowait``), their expiry,
and a channel that shares its owner's nursery (``tasks=``), over in-memory streams."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import trio
import trio.testing

from neonet.core.errors import LimitExceededError
from neonet.proto.ssn import federation as fed
from neonet.proto.ssn.client_protocol import MAX_FRAME, frame
from neonet.services.ssn.channel import FramedChannel


def _channel(
    stream: trio.abc.Stream, tasks: trio.Nursery | None = None
) -> FramedChannel[fed.FederationMessage]:
    return FramedChannel(
        stream,
        decode=fed.decode_message,
        encode=fed.encode_message,
        is_reply=lambda m: isinstance(m, fed.FederationFound | fed.FederationError),
        request_id_of=lambda m: m.request_id,
        tasks=tasks,
    )


async def _answer_lookups(channel: FramedChannel[fed.FederationMessage]) -> None:
    async def on_message(message: fed.FederationMessage) -> None:
        assert isinstance(message, fed.FederationLookup)
        await channel.send(fed.FederationFound(message.request_id, message.key, None))

    await channel.run(on_message)


async def _unexpected(message: fed.FederationMessage) -> None:
    raise AssertionError(f"unexpected {message}")


async def test_request_nowait_is_answered_from_the_reader() -> None:
    left, right = trio.testing.memory_stream_pair()
    requester, answerer = _channel(left), _channel(right)
    replies: list[fed.FederationMessage | None] = []
    got_both = trio.Event()

    def on_reply(reply: fed.FederationMessage | None) -> None:
        replies.append(reply)
        if len(replies) == 2:
            got_both.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_answer_lookups, answerer)
        await nursery.start(requester.run, _unexpected)
        for key in (b"peer-a", b"peer-b"):
            message = fed.FederationLookup(requester.new_request_id(), key)
            requester.request_nowait(message, on_reply, deadline=trio.current_time() + 5)
        with trio.fail_after(5):
            await got_both.wait()
        nursery.cancel_scope.cancel()
    assert [r.presence for r in replies if isinstance(r, fed.FederationFound)] == [
        b"peer-a",
        b"peer-b",
    ]
    # Answered requests are gone: expiring later calls nothing more.
    requester.expire(trio.current_time() + 100)
    assert len(replies) == 2


async def test_unanswered_requests_expire_at_their_deadline_and_on_close() -> None:
    left, _right = trio.testing.memory_stream_pair()  # nobody answers on the right
    requester = _channel(left)
    replies: list[tuple[str, fed.FederationMessage | None]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(requester.run, _unexpected)
        now = trio.current_time()
        first = fed.FederationLookup(requester.new_request_id(), b"first")
        second = fed.FederationLookup(requester.new_request_id(), b"second")
        requester.request_nowait(first, lambda r: replies.append(("first", r)), deadline=now + 1)
        requester.request_nowait(second, lambda r: replies.append(("second", r)), deadline=now + 2)
        requester.expire(now + 0.5)
        assert replies == []
        requester.expire(now + 1.5)
        assert replies == [("first", None)]
        await requester.aclose()  # closing fails what is still waiting
        assert replies == [("first", None), ("second", None)]
        nursery.cancel_scope.cancel()


async def test_a_channel_with_a_shared_nursery_answers_and_closes() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as shared:
        answerer = _channel(right, tasks=shared)
        requester = _channel(left)
        shared.start_soon(_answer_lookups, answerer)
        await shared.start(requester.run, _unexpected)
        with trio.fail_after(5):
            reply = await requester.request(
                fed.FederationLookup(requester.new_request_id(), b"x"), answer_within=5
            )
        assert isinstance(reply, fed.FederationFound) and reply.presence == b"x"
        await requester.aclose()
        with trio.fail_after(5):
            await answerer.closed_event.wait()  # the stream's end closes the other side
        assert answerer.closed
        shared.cancel_scope.cancel()


async def test_frames_handled_before_decoding_and_requests_sent_framed() -> None:
    """``on_frame_nowait`` sees each frame body first (what it takes is not decoded);
    ``on_message_nowait`` then the messages; ``on_message`` the rest.
    ``request_frame_nowait`` sends a request framed by the caller."""
    left, right = trio.testing.memory_stream_pair()
    requester, answerer = _channel(left), _channel(right)
    raw: list[bytes] = []
    synchronous: list[fed.FederationMessage] = []
    replies: list[fed.FederationMessage | None] = []
    answered = trio.Event()

    def on_frame_nowait(body: bytes) -> bool:
        if body == b"\x83\x01\x03\x07":  # STORED 7, which only this hook takes
            raw.append(body)
            return True
        return False

    def on_message_nowait(message: fed.FederationMessage) -> bool:
        if isinstance(message, fed.FederationLookup):
            synchronous.append(message)
            answerer.send_nowait(fed.FederationFound(message.request_id, message.key, None))
            return True
        return False

    def on_reply(reply: fed.FederationMessage | None) -> None:
        replies.append(reply)
        answered.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            partial(
                answerer.run,
                _unexpected,
                on_message_nowait=on_message_nowait,
                on_frame_nowait=on_frame_nowait,
            )
        )
        await nursery.start(requester.run, _unexpected)
        requester.send_frame_nowait(frame(fed.encode_message(fed.Stored(7))))
        rid = requester.new_request_id()
        data = frame(fed.encode_message(fed.FederationLookup(rid, b"key")))
        requester.request_frame_nowait(rid, data, on_reply, deadline=trio.current_time() + 5)
        with trio.fail_after(5):
            await answered.wait()
        nursery.cancel_scope.cancel()
    assert raw == [b"\x83\x01\x03\x07"]
    assert synchronous == [fed.FederationLookup(rid, b"key")]
    assert replies == [fed.FederationFound(rid, b"key", None)]


async def test_a_read_goes_to_on_read_nowait_first_and_unmatched_replies_to_their_hook() -> None:
    """``on_read_nowait`` gets the bodies of a read together and hands back those it does
    not take (which then go the usual way, in order); a reply that no request waits for
    goes to ``on_unmatched_reply``; ``send_frames_nowait`` sends several frames at once."""
    left, right = trio.testing.memory_stream_pair()
    sender, reader = _channel(left), _channel(right)
    reads: list[list[bytes]] = []
    unmatched: list[fed.FederationMessage] = []
    handled: list[fed.FederationMessage] = []
    done = trio.Event()
    stored_7 = fed.encode_message(fed.Stored(7))

    def on_read_nowait(bodies: list[bytes]) -> list[bytes]:
        reads.append(bodies)
        return [body for body in bodies if body != stored_7]  # takes STORED 7

    def on_message_nowait(message: fed.FederationMessage) -> bool:
        handled.append(message)
        done.set()
        return True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            partial(
                reader.run,
                _unexpected,
                on_message_nowait=on_message_nowait,
                on_read_nowait=on_read_nowait,
                on_unmatched_reply=unmatched.append,
            )
        )
        await nursery.start(sender.run, _unexpected)
        frames = [
            frame(fed.encode_message(fed.FederationError(3, fed.ErrorCode.OFFLINE, "gone"))),
            frame(stored_7),
            frame(fed.encode_message(fed.FederationLookup(4, b"key"))),
        ]
        sender.send_frames_nowait(b"".join(frames))
        with trio.fail_after(5):
            await done.wait()
        nursery.cancel_scope.cancel()
    assert len(reads) == 1 and len(reads[0]) == 3  # one read, one call
    assert unmatched == [fed.FederationError(3, fed.ErrorCode.OFFLINE, "gone")]
    assert handled == [fed.FederationLookup(4, b"key")]


class _QueueingStream(trio.abc.Stream):
    """A stream that, like a yamux stream, takes writes synchronously
    (``queue_bytes_nowait``); it records each call instead of sending."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.queued: list[bytes] = []

    def queue_bytes_nowait(self, data: bytes) -> None:
        self.queued.append(bytes(data))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_frames_sent_while_handling_one_read_are_queued_together_in_order() -> None:
    """The answers to the frames of one read leave in one ``queue_bytes_nowait`` call per
    channel, in order; before ``on_message`` awaits, what was queued so far has left."""
    left, right = trio.testing.memory_stream_pair()
    stream = _QueueingStream(right)
    answerer = _channel(stream)
    seen_by_slow_handler: list[list[bytes]] = []
    done = trio.Event()

    def answer(message: fed.FederationMessage) -> fed.FederationMessage:
        assert isinstance(message, fed.FederationLookup)
        return fed.FederationFound(message.request_id, message.key, None)

    def on_message_nowait(message: fed.FederationMessage) -> bool:
        if isinstance(message, fed.FederationLookup) and message.key == b"slow":
            return False
        answerer.send_nowait(answer(message))
        if message.request_id == 4:
            done.set()
        return True

    async def on_message(message: fed.FederationMessage) -> None:
        seen_by_slow_handler.append(list(stream.queued))
        await trio.lowlevel.checkpoint()
        await answerer.send(answer(message))

    requests = [
        fed.FederationLookup(1, b"a"),
        fed.FederationLookup(2, b"b"),
        fed.FederationLookup(3, b"slow"),
        fed.FederationLookup(4, b"c"),
    ]
    answers = [frame(fed.encode_message(answer(m))) for m in requests]
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(answerer.run, on_message, on_message_nowait=on_message_nowait))
        await left.send_all(b"".join(frame(fed.encode_message(m)) for m in requests))
        with trio.fail_after(5):
            await done.wait()
        nursery.cancel_scope.cancel()
    assert seen_by_slow_handler == [[answers[0] + answers[1]]]
    assert stream.queued == [answers[0] + answers[1], answers[2], answers[3]]


def test_max_frame_bounds_the_body_however_the_message_is_sent() -> None:
    """``send_nowait`` (encoded, or framed by ``framer``) and ``send_frame_nowait`` take
    and refuse the same messages: ``MAX_FRAME`` bounds the body, not its length prefix."""
    left, _right = trio.testing.memory_stream_pair()

    def channel(framer: Callable[[bytes], bytes | None] | None) -> FramedChannel[bytes]:
        return FramedChannel(
            left,
            decode=bytes,
            encode=bytes,
            is_reply=lambda m: False,
            request_id_of=len,
            framer=framer,
        )

    plain, framing = channel(None), channel(frame)
    for size in (MAX_FRAME, MAX_FRAME + 1):
        outcomes = []
        for send in (
            plain.send_nowait,
            framing.send_nowait,
            lambda body: plain.send_frame_nowait(frame(body)),
        ):
            try:
                send(bytes(size))
                outcomes.append("sent")
            except LimitExceededError:
                outcomes.append("refused")
        assert outcomes == ["sent" if size == MAX_FRAME else "refused"] * 3
