"""Pure converters: a Telegram update (parsed JSON) → what the channel does with it.

They read the few fields needed straight from the ``dict`` that ``json.loads`` made of the
body: building aiogram's pydantic ``Update`` would cost more than queueing the message. Every
update gets one :data:`Decision`:

- :class:`AskLLM`: a text (or caption) addressed to the bot → the priority queue;
- :class:`RunCommand`: ``/start``, ``/help``, ``/human``, ``/forget`` → answered directly;
- :class:`AnswerNonText`: a sticker, voice or photo without caption → a polite direct answer;
- :class:`Ignore`: acknowledged and dropped, with the reason counted (edits, group messages not
  addressed to the bot, service messages, other bots, update types the bot does not handle).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from core.models import InboundMessage, MessageMetadata

CHANNEL: Final = "telegram"
COMMANDS: Final = frozenset({"start", "help", "human", "forget"})
GROUP_CHAT_TYPES: Final = frozenset({"group", "supergroup"})
# What a customer can send that is content but not text. Any other message without text is a
# service message (someone joined, a pinned message, a timer changed...) and gets no answer.
NON_TEXT_CONTENT: Final = frozenset(
    {
        "sticker",
        "photo",
        "voice",
        "video",
        "video_note",
        "audio",
        "document",
        "animation",
        "contact",
        "location",
        "venue",
        "poll",
        "dice",
        "story",
        "game",
        "paid_media",
        "checklist",
    }
)
MAX_LOCALE_LENGTH: Final = 35
# Telegram's own limit for a text or caption (it counts UTF-16 units, so never fewer
# characters): anything longer is no Telegram update, and would be unbounded LLM input.
MAX_TEXT_LENGTH: Final = 4096
# JSON can escape a lone surrogate ("\ud800"), which no UTF-8 store can hold; Telegram never
# sends one (json.loads has already joined the real surrogate pairs).
_LONE_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")


class InvalidUpdate(ValueError):
    """The body is JSON but not a Telegram update (no integer ``update_id``, say)."""


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """The bot the updates are for: its id (the message namespace) and its @username."""

    id: int
    username: str | None
    # "@username" as a word of its own, any case: how customers address the bot in groups.
    mention: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = (
            re.compile(rf"(?<![\w@])@{re.escape(self.username)}(?!\w)", re.IGNORECASE)
            if self.username
            else None
        )
        object.__setattr__(self, "mention", pattern)


@dataclass(frozen=True, slots=True)
class AskLLM:
    message: InboundMessage


@dataclass(frozen=True, slots=True)
class RunCommand:
    command: str  # one of COMMANDS
    message: InboundMessage


@dataclass(frozen=True, slots=True)
class AnswerNonText:
    message: InboundMessage


@dataclass(frozen=True, slots=True)
class Ignore:
    reason: str  # the channel_events label: edited_ignored, not_addressed, ...


Decision = AskLLM | RunCommand | AnswerNonText | Ignore


def classify_update(update: Mapping[str, Any], bot: BotIdentity) -> Decision:
    """Decide what to do with one update. Raises InvalidUpdate for a body that is not one."""
    if type(update.get("update_id")) is not int:
        raise InvalidUpdate("update_id: an integer is required")
    message = update.get("message")
    if message is None:
        # Edits are not answered again: a customer fixing a typo must not get a second reply.
        edited = "edited_message" in update or "edited_business_message" in update
        return Ignore("edited_ignored" if edited else "unsupported_update")
    if not isinstance(message, dict):
        raise InvalidUpdate("message: an object is required")
    chat = message.get("chat")
    if not isinstance(chat, dict):
        raise InvalidUpdate("message: chat is required")
    chat_id = chat.get("id")
    message_id = message.get("message_id")
    if type(chat_id) is not int or type(message_id) is not int:
        raise InvalidUpdate("message: integer message_id and chat.id are required")
    sender = message.get("from")
    if not isinstance(sender, dict):
        sender = {}
    if sender.get("is_bot"):
        return Ignore("from_bot")  # never talk to other bots (or to ourselves)
    in_group = chat.get("type") in GROUP_CHAT_TYPES

    text = message.get("text")
    if isinstance(text, str):
        entities = message.get("entities")
    else:
        text, entities = message.get("caption"), message.get("caption_entities")
    if not isinstance(text, str):
        if not NON_TEXT_CONTENT.intersection(message):
            return Ignore("service_message")
        if in_group and not replies_to_bot(message, bot):
            return Ignore("not_addressed")
        return AnswerNonText(to_inbound(message, chat_id, message_id, sender, "", bot))
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidUpdate(f"message: text over {MAX_TEXT_LENGTH} characters")
    if _LONE_SURROGATE.search(text):
        raise InvalidUpdate("message: text is not Unicode text (a lone surrogate)")
    if not isinstance(entities, list):
        entities = ()

    addressed = False
    if text.startswith("/"):
        name, target = parse_command(text)
        if target is not None:
            if bot.username is None or target.lower() != bot.username.lower():
                return Ignore("not_addressed")  # "/help@other_bot"
            addressed = True
            # Entity offsets no longer fit the shortened text; @mentions are found without them.
            text, entities = text.replace("@" + target, "", 1), ()
        if name in COMMANDS:
            # In groups Telegram delivers bare commands to the bot too ("/help"): answer them.
            return RunCommand(name, to_inbound(message, chat_id, message_id, sender, text, bot))
    if (
        in_group
        and not addressed
        and not (mentions_bot(text, entities, bot) or replies_to_bot(message, bot))
    ):
        return Ignore("not_addressed")
    if "@" in text or entities:
        text = strip_mention(text, entities, bot)
    if not text:  # only "@shop_bot": greet, as /start does
        return RunCommand("start", to_inbound(message, chat_id, message_id, sender, "", bot))
    return AskLLM(to_inbound(message, chat_id, message_id, sender, text, bot))


def to_inbound(
    message: Mapping[str, Any],
    chat_id: int,
    message_id: int,
    sender: Mapping[str, Any],
    text: str,
    bot: BotIdentity,
) -> InboundMessage:
    """The core message (of a ``message`` whose chat :func:`classify_update` checked): one
    conversation per chat, ids unique per bot. A group's members share its conversation; a
    private chat is its user's own."""
    chat = str(chat_id)
    reply_to = {"chat_id": chat, "message_id": str(message_id)}
    thread = message.get("message_thread_id")
    if message.get("is_topic_message") and type(thread) is int:
        reply_to["message_thread_id"] = str(thread)  # answer in the forum topic it came from
    user = sender.get("id")
    locale = sender.get("language_code")
    return InboundMessage(
        channel=CHANNEL,
        account=str(bot.id),
        message_id=f"{chat}:{message_id}",
        user_id=str(user) if type(user) is int else chat,
        conversation_id=chat,
        group=message["chat"].get("type") in GROUP_CHAT_TYPES,
        text=text,
        metadata=MessageMetadata(
            locale=locale[:MAX_LOCALE_LENGTH]
            if isinstance(locale, str) and locale and not _LONE_SURROGATE.search(locale)
            else None
        ),
        reply_to=reply_to,
    )


def parse_command(text: str) -> tuple[str, str | None]:
    """``"/Help@shop_bot x"`` → ``("help", "shop_bot")``; ``"/start x"`` → ``("start", None)``."""
    token = text.split(maxsplit=1)[0][1:]
    name, _, target = token.partition("@")
    return name.lower(), target or None


def mentions_bot(text: str, entities: Any, bot: BotIdentity) -> bool:
    """Whether ``text`` names the bot: ``@username``, or a text_mention entity of the bot."""
    if bot.mention is not None and "@" in text and bot.mention.search(text):
        return True
    return any(_is_text_mention_of(entity, bot) for entity in entities)


def replies_to_bot(message: Mapping[str, Any], bot: BotIdentity) -> bool:
    """Whether the message answers one of the bot's own messages."""
    replied = message.get("reply_to_message")
    if not isinstance(replied, dict):
        return False
    author = replied.get("from")
    return isinstance(author, dict) and author.get("id") == bot.id


def strip_mention(text: str, entities: Any, bot: BotIdentity) -> str:
    """``text`` without the bot's mentions, for the LLM (``"@shop_bot, where is it?"``)."""
    # text_mention spans first, from the end so earlier offsets stay valid. Offsets count
    # UTF-16 code units, as everywhere in the Bot API.
    spans = sorted(
        (
            (entity["offset"], entity["length"])
            for entity in entities
            if _is_text_mention_of(entity, bot)
        ),
        reverse=True,
    )
    original = text
    for offset, length in spans:
        start, end = utf16_index(text, offset), utf16_index(text, offset + length)
        text = text[:start] + text[end:]
    if bot.mention is not None:
        text = bot.mention.sub("", text)
    if text == original:  # nothing of ours: the customer's text as it was
        return text.strip()
    text = re.sub(r"[ \t]{2,}", " ", text)
    return text.strip().lstrip(",:;").strip()


def utf16_index(text: str, units: int) -> int:
    """The ``str`` index of the position ``units`` UTF-16 code units into ``text``."""
    if text.isascii():
        return min(units, len(text))
    prefix = text.encode("utf-16-le")[: 2 * units]
    return len(prefix.decode("utf-16-le", errors="ignore"))


def _is_text_mention_of(entity: Any, bot: BotIdentity) -> bool:
    if not isinstance(entity, dict) or entity.get("type") != "text_mention":
        return False
    user = entity.get("user")
    return (
        isinstance(user, dict)
        and user.get("id") == bot.id
        and type(entity.get("offset")) is int
        and type(entity.get("length")) is int
    )
