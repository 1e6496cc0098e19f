"""The core models survive their trip through Redis unchanged."""

from __future__ import annotations

from core.models import InboundMessage, MessageMetadata, Reply, ReplySource


def test_inbound_message_round_trips_through_json() -> None:
    message = InboundMessage(
        channel="webhook",
        account="gw",
        message_id="m1",
        user_id="u1",
        conversation_id="c1",
        text="où est ma commande ? 订单",
        reply_to={"callback_url": "http://127.0.0.1:9/cb"},
        metadata=MessageMetadata(vip=True, order_id="A-1", locale="fr-FR"),
    )
    assert InboundMessage.from_json(message.to_json()) == message
    assert message.dedupe_key == "webhook:gw:m1"
    assert message.conversation_key == "webhook:gw:c1"


def test_reply_round_trips_and_keeps_the_route_of_its_message() -> None:
    message = InboundMessage(
        channel="webhook",
        account="gw",
        message_id="m1",
        user_id="u1",
        conversation_id="c1",
        text="hi",
        reply_to={"callback_url": "x"},
    )
    reply = Reply.for_message(
        message,
        ticket_id="T1",
        priority=0,
        text="hello",
        source=ReplySource.FALLBACK,
        error_code="timeout",
        wait_until=5.0,
    )
    again = Reply.from_json(reply.to_json())
    assert again == reply and again.source is ReplySource.FALLBACK
    assert (again.message_id, again.reply_to) == ("m1", {"callback_url": "x"})
