"""Pure converters of the Telegram channel, on real update payloads (as the Bot API sends)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.telegram.convert import (
    AnswerNonText,
    AskLLM,
    BotIdentity,
    Ignore,
    InvalidUpdate,
    RunCommand,
    classify_update,
    parse_command,
    strip_mention,
)
from core.models import InboundMessage

BOT = BotIdentity(5000000001, "shop_help_bot")

PRIVATE_TEXT: dict[str, Any] = {
    "update_id": 284537001,
    "message": {
        "message_id": 1365,
        "from": {
            "id": 1111111,
            "is_bot": False,
            "first_name": "Ana",
            "last_name": "Lima",
            "username": "ana_l",
            "language_code": "pt-br",
        },
        "chat": {
            "id": 1111111,
            "first_name": "Ana",
            "last_name": "Lima",
            "username": "ana_l",
            "type": "private",
        },
        "date": 1732867200,
        "text": "Where is my order #A12345?",
    },
}

GROUP_MENTION: dict[str, Any] = {
    "update_id": 284537002,
    "message": {
        "message_id": 88,
        "from": {"id": 2222222, "is_bot": False, "first_name": "Li", "language_code": "zh-hans"},
        "chat": {"id": -1001987654321, "title": "Shop fans", "type": "supergroup"},
        "date": 1732867201,
        "text": "@Shop_Help_Bot 我的订单什么时候发货？",
        "entities": [{"offset": 0, "length": 14, "type": "mention"}],
    },
}

GROUP_CHATTER: dict[str, Any] = {
    "update_id": 284537003,
    "message": {
        "message_id": 89,
        "from": {"id": 3333333, "is_bot": False, "first_name": "Tom", "language_code": "en"},
        "chat": {"id": -1001987654321, "title": "Shop fans", "type": "supergroup"},
        "date": 1732867202,
        "text": "anyone else waiting for the sale to start?",
    },
}

GROUP_REPLY_TO_BOT: dict[str, Any] = {
    "update_id": 284537004,
    "message": {
        "message_id": 90,
        "from": {"id": 3333333, "is_bot": False, "first_name": "Tom", "language_code": "en"},
        "chat": {"id": -4012345678, "title": "Family orders", "type": "group"},
        "date": 1732867203,
        "reply_to_message": {
            "message_id": 86,
            "from": {
                "id": 5000000001,
                "is_bot": True,
                "first_name": "Shop",
                "username": "shop_help_bot",
            },
            "chat": {"id": -4012345678, "title": "Family orders", "type": "group"},
            "date": 1732867100,
            "text": "Your parcel left the warehouse.",
        },
        "text": "thanks! and when does it arrive?",
    },
}

PHOTO_WITH_CAPTION: dict[str, Any] = {
    "update_id": 284537005,
    "message": {
        "message_id": 1366,
        "from": {"id": 1111111, "is_bot": False, "first_name": "Ana", "language_code": "en"},
        "chat": {"id": 1111111, "first_name": "Ana", "type": "private"},
        "date": 1732867210,
        "photo": [
            {
                "file_id": "AgACAgQAAxkBAAIC",
                "file_unique_id": "AQADBbcx",
                "file_size": 1413,
                "width": 90,
                "height": 51,
            },
            {
                "file_id": "AgACAgQAAxkBAAID",
                "file_unique_id": "AQADBbcy",
                "file_size": 48213,
                "width": 800,
                "height": 450,
            },
        ],
        "caption": "The box arrived crushed, I want a refund",
    },
}

STICKER: dict[str, Any] = {
    "update_id": 284537006,
    "message": {
        "message_id": 1367,
        "from": {"id": 1111111, "is_bot": False, "first_name": "Ana", "language_code": "en"},
        "chat": {"id": 1111111, "first_name": "Ana", "type": "private"},
        "date": 1732867220,
        "sticker": {
            "width": 512,
            "height": 512,
            "emoji": "😡",
            "set_name": "AngryCat",
            "is_animated": True,
            "is_video": False,
            "type": "regular",
            "file_id": "CAACAgIAAxkBAAIE",
            "file_unique_id": "AgADwQ",
            "file_size": 31234,
        },
    },
}

EDITED: dict[str, Any] = {
    "update_id": 284537007,
    "edited_message": {
        **PRIVATE_TEXT["message"],
        "edit_date": 1732867290,
        "text": "Where is my order #A12346?",
    },
}

NEW_MEMBER: dict[str, Any] = {
    "update_id": 284537008,
    "message": {
        "message_id": 91,
        "from": {"id": 4444444, "is_bot": False, "first_name": "Eve"},
        "chat": {"id": -1001987654321, "title": "Shop fans", "type": "supergroup"},
        "date": 1732867300,
        "new_chat_participant": {"id": 4444444, "is_bot": False, "first_name": "Eve"},
        "new_chat_members": [{"id": 4444444, "is_bot": False, "first_name": "Eve"}],
    },
}

CALLBACK_QUERY: dict[str, Any] = {
    "update_id": 284537009,
    "callback_query": {
        "id": "4382bfdwdsb323b2d9",
        "from": {"id": 1111111, "is_bot": False, "first_name": "Ana"},
        "chat_instance": "-5231441281284",
        "data": "track",
    },
}


def text_update(text: str, *, chat_type: str = "private", **extra: Any) -> dict[str, Any]:
    chat_id = 1111111 if chat_type == "private" else -1001987654321
    message = {
        **PRIVATE_TEXT["message"],
        "chat": {"id": chat_id, "type": chat_type},
        "text": text,
        **extra,
    }
    return {"update_id": 1, "message": message}


def inbound(decision: object) -> InboundMessage:
    assert isinstance(decision, AskLLM | RunCommand | AnswerNonText), decision
    return decision.message


def test_private_text_becomes_a_core_message_with_the_reply_route() -> None:
    decision = classify_update(PRIVATE_TEXT, BOT)
    assert isinstance(decision, AskLLM)
    message = decision.message
    assert message.channel == "telegram" and message.account == "5000000001"
    assert message.message_id == "1111111:1365"
    assert message.user_id == "1111111" and message.conversation_id == "1111111"
    assert message.text == "Where is my order #A12345?"
    assert message.metadata.locale == "pt-br"
    assert message.reply_to == {"chat_id": "1111111", "message_id": "1365"}
    assert message.dedupe_key == "telegram:5000000001:1111111:1365"
    # A private chat is its user's own: the key of earlier versions.
    assert not message.group and message.conversation_key == "telegram:5000000001:1111111"


def test_a_caption_is_the_text_of_a_photo() -> None:
    assert inbound(classify_update(PHOTO_WITH_CAPTION, BOT)).text == (
        "The box arrived crushed, I want a refund"
    )


@pytest.mark.parametrize("content", ["sticker", "voice", "photo", "video_note", "location"])
def test_content_without_text_gets_the_polite_direct_answer(content: str) -> None:
    update = {
        "update_id": 5,
        "message": {
            **{k: v for k, v in STICKER["message"].items() if k != "sticker"},
            content: {"file_id": "x"},
        },
    }
    decision = classify_update(update, BOT)
    assert isinstance(decision, AnswerNonText)
    assert decision.message.text == "" and decision.message.reply_to["message_id"] == "1367"


def test_edits_are_acknowledged_and_not_answered_again() -> None:
    assert classify_update(EDITED, BOT) == Ignore("edited_ignored")


def test_group_chatter_not_addressed_to_the_bot_is_ignored() -> None:
    assert classify_update(GROUP_CHATTER, BOT) == Ignore("not_addressed")


def test_a_group_mention_in_any_case_is_answered_without_the_mention() -> None:
    message = inbound(classify_update(GROUP_MENTION, BOT))
    assert message.text == "我的订单什么时候发货？"
    assert message.conversation_id == "-1001987654321" and message.user_id == "2222222"
    assert message.metadata.locale == "zh-hans"
    # Its members share the group's conversation (history, context, hand-over).
    tom = {**GROUP_MENTION["message"], "from": {"id": 3333333, "is_bot": False}}
    other = inbound(classify_update({**GROUP_MENTION, "message": tom}, BOT))
    assert message.group and other.group
    assert other.conversation_key == message.conversation_key


def test_a_reply_to_the_bot_in_a_group_is_answered() -> None:
    message = inbound(classify_update(GROUP_REPLY_TO_BOT, BOT))
    assert message.text == "thanks! and when does it arrive?"
    assert message.reply_to == {"chat_id": "-4012345678", "message_id": "90"}


def test_a_text_mention_entity_counts_in_utf16_offsets_and_is_stripped() -> None:
    # "🎁 " is 3 UTF-16 code units: the entity of "Shop" starts at 3, not 2.
    update = text_update(
        "🎁 Shop can I change the address?",
        chat_type="group",
        entities=[
            {
                "offset": 3,
                "length": 4,
                "type": "text_mention",
                "user": {"id": BOT.id, "is_bot": True, "first_name": "Shop"},
            }
        ],
    )
    assert inbound(classify_update(update, BOT)).text == "🎁 can I change the address?"


def test_a_mention_of_another_user_does_not_address_the_bot() -> None:
    update = text_update("@shop_help_bot_fan look at this", chat_type="supergroup")
    assert classify_update(update, BOT) == Ignore("not_addressed")
    update = text_update("mail me at x@shop_help_bot.com", chat_type="supergroup")
    assert classify_update(update, BOT) == Ignore("not_addressed")


def test_only_a_mention_is_greeted_like_start() -> None:
    decision = classify_update(text_update("@shop_help_bot", chat_type="group"), BOT)
    assert isinstance(decision, RunCommand) and decision.command == "start"


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("/start", "start"),
        ("/start ref_campaign42", "start"),
        ("/help@shop_help_bot", "help"),
        ("/HUMAN please", "human"),
        ("/forget", "forget"),
    ],
)
def test_commands_with_and_without_the_bot_name(text: str, command: str) -> None:
    decision = classify_update(text_update(text), BOT)
    assert isinstance(decision, RunCommand) and decision.command == command


def test_bare_commands_are_answered_in_groups_and_other_bots_commands_are_not() -> None:
    decision = classify_update(text_update("/help", chat_type="supergroup"), BOT)
    assert isinstance(decision, RunCommand) and decision.command == "help"
    assert classify_update(text_update("/help@other_bot", chat_type="supergroup"), BOT) == Ignore(
        "not_addressed"
    )


def test_unknown_commands_go_to_the_llm_as_text() -> None:
    assert inbound(classify_update(text_update("/track 12345"), BOT)).text == "/track 12345"
    update = text_update("/track@shop_help_bot 12345", chat_type="group")
    assert inbound(classify_update(update, BOT)).text == "/track 12345"


def test_service_messages_and_other_bots_get_no_answer() -> None:
    assert classify_update(NEW_MEMBER, BOT) == Ignore("service_message")
    from_bot = text_update("hello")
    from_bot["message"]["from"] = {"id": 9, "is_bot": True, "first_name": "Other"}
    assert classify_update(from_bot, BOT) == Ignore("from_bot")


def test_update_types_the_bot_does_not_handle_are_ignored() -> None:
    assert classify_update(CALLBACK_QUERY, BOT) == Ignore("unsupported_update")


def test_a_forum_topic_message_is_answered_in_its_topic() -> None:
    update = text_update("hi", chat_type="supergroup", is_topic_message=True)
    update["message"]["message_thread_id"] = 17
    update["message"]["text"] = "@shop_help_bot hi"
    assert inbound(classify_update(update, BOT)).reply_to["message_thread_id"] == "17"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"update_id": "1", "message": PRIVATE_TEXT["message"]},
        {"update_id": 1, "message": "hello"},
        {"update_id": 1, "message": {"message_id": 1, "text": "no chat"}},
        {"update_id": 1, "message": {"message_id": "1", "chat": {"id": 1}, "text": "x"}},
    ],
)
def test_bodies_that_are_not_updates_are_invalid(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidUpdate):
        classify_update(body, BOT)


def with_text(text: str, **sender: Any) -> dict[str, Any]:
    message = PRIVATE_TEXT["message"]
    return {
        **PRIVATE_TEXT,
        "message": {**message, "text": text, "from": {**message["from"], **sender}},
    }


def with_caption(caption: str) -> dict[str, Any]:
    message = {k: v for k, v in PRIVATE_TEXT["message"].items() if k != "text"}
    return {**PRIVATE_TEXT, "message": {**message, "photo": [{"file_id": "x"}], "caption": caption}}


@pytest.mark.parametrize(
    "text",
    [
        "x" * 4097,  # over Telegram's limit: unbounded input for the LLM
        "where is \ud800 my order?",  # a lone surrogate escape: no UTF-8 store holds it
    ],
)
def test_texts_telegram_never_sends_are_invalid(text: str) -> None:
    with pytest.raises(InvalidUpdate, match="text"):
        classify_update(with_text(text), BOT)
    with pytest.raises(InvalidUpdate, match="text"):
        classify_update(with_caption(text), BOT)


def test_the_longest_text_and_astral_characters_are_answered() -> None:
    assert inbound(classify_update(with_text("x" * 4096), BOT)).text == "x" * 4096
    assert inbound(classify_update(with_text("where is it? \U0001f600"), BOT)).text.endswith(
        "\U0001f600"
    )


def test_a_locale_that_is_not_unicode_text_is_dropped() -> None:
    message = inbound(classify_update(with_text("hello", language_code="en\udc80"), BOT))
    assert message.metadata.locale is None


def test_a_bot_without_username_still_sees_replies_and_text_mentions() -> None:
    bot = BotIdentity(5000000001, None)
    assert isinstance(classify_update(GROUP_REPLY_TO_BOT, bot), AskLLM)
    assert classify_update(GROUP_MENTION, bot) == Ignore("not_addressed")


def test_parse_command_and_strip_mention() -> None:
    assert parse_command("/Help@Shop_Help_Bot now") == ("help", "Shop_Help_Bot")
    assert parse_command("/start") == ("start", None)
    assert strip_mention("@shop_help_bot, where is it?", [], BOT) == "where is it?"
    assert strip_mention("hi @SHOP_HELP_BOT  there", [], BOT) == "hi there"
    assert strip_mention(":)  write to me@example.com", [], BOT) == ":)  write to me@example.com"
