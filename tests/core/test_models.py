"""The core models survive their trip through Redis unchanged."""

from __future__ import annotations

import json

from core.models import (
    InboundMessage,
    MessageMetadata,
    Reply,
    ReplySource,
    conversation_key,
    named_conversation_key,
)


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
    assert message.conversation_key == "webhook:gw:c1\x1fuu1"  # c1 is u1's own


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


def test_a_reply_stored_before_the_group_flag_loads_as_one_to_one() -> None:
    message = InboundMessage("telegram", "m1", "7", "-100", "hi", account="1", group=True)
    reply = Reply.for_message(message, ticket_id="T1", priority=2, text="x", source=ReplySource.LLM)
    assert Reply.from_json(reply.to_json()).conversation_key == message.conversation_key
    old = json.loads(reply.to_json())
    del old["group"]
    assert Reply.from_json(json.dumps(old)).group is False


def test_a_one_to_one_conversation_keeps_the_key_of_earlier_versions() -> None:
    assert conversation_key("telegram", "1", "42", "42") == "telegram:1:42"
    assert conversation_key("webhook", "gw", "alice", "alice") == "webhook:gw:alice"


def test_conversation_keys_of_different_users_and_groups_never_meet() -> None:
    ids = ["alice", "bob", "gw:alice", "alice:bob", "g", "u", "ubob", "alice:g"]
    keys: dict[str, tuple[str, str, bool]] = {}
    for conversation in ids:
        for user in ids:
            for group in (False, True):
                key = conversation_key("webhook", "gw", conversation, user, group)
                # In a group every member has the group's key; otherwise each user their own.
                who = (conversation, "" if group else user, group)
                assert keys.setdefault(key, who) == who, (key, keys[key], who)
    assert conversation_key("webhook", "gw", "alice", "bob") != "webhook:gw:alice"
    assert conversation_key("webhook", "gw", "alice", "bob", True) != "webhook:gw:alice"


def test_a_forget_request_names_a_users_conversation_or_a_group() -> None:
    def named(conversation: str | None, user: str | None, group: bool = False) -> str:
        return named_conversation_key("webhook", "gw", conversation, user, group)

    assert named("alice", None) == named(None, "alice") == "webhook:gw:alice"
    assert named("shop", "bob") == conversation_key("webhook", "gw", "shop", "bob")
    assert named("room", "bob", True) == conversation_key("webhook", "gw", "room", "x", True)
