"""Offline payments over a NeoNet stream on a local network: ``/neonet/bank/pos/2.0.0``.

The other channel for an ``OfflinePayment`` besides a text token (docs/bank.md, "Offline
purses"): the payer opens a stream to the POS (on a LAN, with no bank reachable) and
sends one message ``[0, payment]``; the POS answers ``[0, receipt]`` or
``[1, reason, proof | null]`` and closes. Messages use the bank framing
(``neonet.proto.bank.wire``), at most 64 KiB. The POS checks everything offline
(``PointOfSale.accept``); ``now`` comes from the injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from neonet.apps.bank.service import StreamHost, receive_message
from neonet.core.errors import DecodeError, NeoNetError, RemoteProtocolError
from neonet.core.peer_id import PeerId
from neonet.net.yamux_session import YamuxStream
from neonet.proto.bank import wire
from neonet.proto.bank.messages import FraudProof, OfflinePayment, Receipt
from neonet.proto.bank.pos import PointOfSale

POS_PROTOCOL = "/neonet/bank/pos/2.0.0"
MAX_PAYMENT_MESSAGE = 64 * 1024
PAY_TIMEOUT = 10.0

logger = logging.getLogger("neonet.bank.pos")


class PaymentRefusedError(NeoNetError):
    """The POS refused the payment (``proof`` if it caught a double spend)."""

    def __init__(self, reason: str, proof: FraudProof | None) -> None:
        super().__init__(reason)
        self.proof = proof


def serve_pos(host: StreamHost, pos: PointOfSale, clock: Callable[[], int]) -> None:
    """Accept payments on ``POS_PROTOCOL`` with ``pos``; ``clock()`` is the time in seconds."""

    async def handle(stream: YamuxStream) -> None:
        reader = wire.FrameReader(MAX_PAYMENT_MESSAGE)
        try:
            with trio.fail_after(PAY_TIMEOUT):
                message = await receive_message(stream, reader)
                if message is None:
                    return
                if len(message) != 2 or message[0] != 0 or type(message[1]) is not bytes:
                    raise DecodeError("a payment message is [0, payment]")
                result = pos.accept(message[1], clock())
                if isinstance(result, Receipt):
                    answer: list[object] = [0, result.encode()]
                else:
                    proof = None if result.proof is None else result.proof.encode()
                    answer = [1, result.reason, proof]
                await stream.send_all(wire.frame(answer))
        except DecodeError as exc:
            await stream.send_all(wire.frame([1, f"bad request: {exc}", None]))
        except (RemoteProtocolError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            logger.info("payment stream ended: %s", exc)
        finally:
            await stream.aclose()

    host.set_stream_handler(POS_PROTOCOL, handle)


async def pay_pos(host: StreamHost, pos_peer: PeerId, payment: OfflinePayment) -> Receipt:
    """Hand ``payment`` to the POS at ``pos_peer``; its signed receipt (checked)."""
    stream = await host.new_stream(pos_peer, [POS_PROTOCOL])
    try:
        with trio.fail_after(PAY_TIMEOUT):
            await stream.send_all(wire.frame([0, payment.encode()]))
            answer = await receive_message(stream, wire.FrameReader(MAX_PAYMENT_MESSAGE))
    finally:
        await stream.aclose()
    if answer is None:
        raise RemoteProtocolError("the POS closed the stream without an answer")
    if answer[0] == 0 and len(answer) == 2 and type(answer[1]) is bytes:
        receipt = Receipt.decode(answer[1])
        if receipt.spend_hash != payment.spend.digest() or not receipt.verify():
            raise RemoteProtocolError("the POS's receipt does not match or verify")
        return receipt
    if answer[0] == 1 and len(answer) == 3 and type(answer[1]) is str:
        proof = FraudProof.decode(answer[2]) if type(answer[2]) is bytes else None
        raise PaymentRefusedError(answer[1], proof)
    raise RemoteProtocolError("unexpected answer from the POS")
