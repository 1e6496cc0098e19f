"""The core message model every channel adapter converts to and from.

Adapters turn platform payloads into :class:`InboundMessage`; the worker turns them into
:class:`Reply`; the reply sender of the message's channel turns that back into a platform call.
Both are plain dataclasses with a compact JSON form, because they cross Redis on the hot path.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from enum import IntEnum, StrEnum
from typing import Any, Final


class Priority(IntEnum):
    """Queue priority: lower is more urgent."""

    URGENT = 0  # order or payment problem
    HIGH = 1  # VIP, human requested, complaint, follow-up on own order or refund
    NORMAL = 2  # everything else


class ReplySource(StrEnum):
    """Where the text of a reply came from (the ``source`` field of a callback)."""

    LLM = "llm"
    CACHE = "cache"
    TEMPLATE = "template"
    HUMAN = "human"
    FALLBACK = "fallback"
    ACK = "ack"
    NOTICE = "notice"  # the flood limit's notice: not an answer


_CJK: Final = re.compile(r"[\u3400-\u9fff]")

# Separates a conversation id from what follows it in a conversation key. No channel lets it
# into an id: Telegram ids are integers, WeChat's OpenIDs come in XML (which cannot carry it),
# the webhook refuses control characters in ids (400).
KEY_SEPARATOR: Final = "\x1f"
GROUP_SUFFIX: Final = KEY_SEPARATOR + "g"
USER_SUFFIX: Final = KEY_SEPARATOR + "u"


def conversation_key(
    channel: str, account: str, conversation_id: str, user_id: str, group: bool = False
) -> str:
    """Where a conversation's state lives (history, context, caches, hand-over), unique across
    channels and accounts, and shared between users only in a group conversation.

    - one-to-one, the common case (``conversation_id == user_id``: a Telegram private chat, a
      WeChat OpenID, a webhook message naming no conversation): ``channel:account:<id>``, the
      key of earlier versions;
    - a group (a Telegram group, a webhook message with ``metadata.group``):
      ``channel:account:<conversation_id>`` + US + ``g``;
    - any other conversation is its user's own: ``channel:account:<conversation_id>`` + US +
      ``u`` + ``<user_id>``.

    No two of these are equal (US: :data:`KEY_SEPARATOR`, which no id contains): after the fixed
    ``channel:account:`` (neither holds ":"), a key without US is the one-to-one form; one
    with US splits at its only US into the conversation id and ``g`` (group) or ``u`` + the
    user id. So naming another customer's id as the conversation (with or without
    ``group``) never reaches that customer's one-to-one key, nor another user's.
    """
    prefix = f"{channel}:{account}:{conversation_id}"
    if group:
        return prefix + GROUP_SUFFIX
    if conversation_id == user_id:
        return prefix
    return prefix + USER_SUFFIX + user_id


def named_conversation_key(
    channel: str,
    account: str,
    conversation_id: str | None,
    user_id: str | None,
    group: bool,
) -> str:
    """The key of the conversation a request names (forgetting): a group by its id, else the
    user's conversation of that id. Either id alone names that user's one-to-one
    conversation (as a webhook message without a ``conversation_id`` has)."""
    conversation = conversation_id or user_id
    if conversation is None:
        raise ValueError("a conversation_id or a user_id is required")
    return conversation_key(channel, account, conversation, user_id or conversation, group)


def spoken_language(text: str, locale: str) -> str | None:
    """The language a message is in, as far as it is safe to tell: the locale's language,
    Chinese for Chinese characters, English for plain ASCII text, else None (unknown)."""
    if locale:
        return locale.replace("_", "-").split("-")[0].lower()
    if _CJK.search(text):
        return "zh"
    return "en" if text.isascii() else None


def language(locale: str | None) -> str:
    """The language of the shipped texts for a locale: ``zh`` for Chinese, else ``en``."""
    return "zh" if (locale or "").lower().startswith("zh") else "en"


@dataclass(slots=True)
class MessageMetadata:
    """Optional facts a channel knows about a message (all optional)."""

    vip: bool = False
    order_issue: bool = False
    payment_issue: bool = False
    order_id: str | None = None
    product_id: str | None = None
    locale: str | None = None


@dataclass(slots=True)
class InboundMessage:
    """A customer message, normalised. ``(channel, account, message_id)`` is unique."""

    channel: str
    message_id: str
    user_id: str
    conversation_id: str
    text: str
    account: str = ""  # gateway name, bot id...: the namespace the message id is unique in
    metadata: MessageMetadata = field(default_factory=MessageMetadata)
    reply_to: dict[str, str] = field(default_factory=dict)  # channel routing (callback_url...)
    received_at: float = field(default_factory=time.time)
    # The conversation is shared by its members (a Telegram group, a webhook message that says
    # so): they see each other's history. Otherwise it is the sender's own.
    group: bool = False

    @property
    def dedupe_key(self) -> str:
        return f"{self.channel}:{self.account}:{self.message_id}"

    @property
    def conversation_key(self) -> str:
        """The conversation's state, unique across channels and accounts (see
        :func:`conversation_key`)."""
        return conversation_key(
            self.channel, self.account, self.conversation_id, self.user_id, self.group
        )

    @property
    def sender_key(self) -> str:
        """Who wrote it, unique across channels and accounts (flood limits, forgetting)."""
        return f"{self.channel}:{self.account}:{self.user_id}"

    @property
    def identity(self) -> str:
        """Who wrote it, as the store links people: ``telegram:<user id>``,
        ``webhook:<gateway>:<user_id>``, ``wechat:<OpenID>``. The terminal chat speaks as an
        identity of the demo shop (its user id is one)."""
        if self.channel in ("telegram", "wechat"):
            return f"{self.channel}:{self.user_id}"
        if self.channel == "chat":
            return self.user_id
        return f"{self.channel}:{self.account}:{self.user_id}"

    def to_json(self) -> str:
        # Hand-built rather than dataclasses.asdict, whose deep copies cost a quarter of the
        # ingest path's CPU.
        data = {name: getattr(self, name) for name in _INBOUND_FIELDS}
        data["metadata"] = {name: getattr(self.metadata, name) for name in _METADATA_FIELDS}
        return _dumps(data)

    @classmethod
    def from_json(cls, raw: str | bytes) -> InboundMessage:
        data: dict[str, Any] = json.loads(raw)
        data["metadata"] = MessageMetadata(**data.get("metadata") or {})
        return cls(**data)


@dataclass(slots=True)
class Reply:
    """The one answer to one inbound message, on its way back through the message's channel."""

    ticket_id: str
    priority: int
    text: str
    source: ReplySource
    channel: str
    account: str
    message_id: str
    conversation_id: str
    user_id: str
    reply_to: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None
    # Unique per reply: the ticket id for the bot's one answer, a new id per staff message.
    reply_id: str = ""
    # All the messages this reply answers, oldest first, when a burst was answered together
    # (empty: just ``message_id``).
    message_ids: list[str] = field(default_factory=list)
    # A synchronous waiter (webhook ?wait=N) may take the reply until then; callbacks wait for it.
    wait_until: float = 0.0
    created_at: float = field(default_factory=time.time)
    group: bool = False  # as the message's (replies stored before it existed: one-to-one)

    @property
    def conversation_key(self) -> str:
        """The conversation this reply belongs to (as ``InboundMessage.conversation_key``)."""
        return conversation_key(
            self.channel, self.account, self.conversation_id, self.user_id, self.group
        )

    @property
    def delivery_id(self) -> str:
        """What the outbox delivers once: the reply id (the ticket id unless a person wrote)."""
        return self.reply_id or self.ticket_id

    @property
    def serial_key(self) -> str:
        """Deliveries with one serial key go out in order: a conversation's replies."""
        return self.conversation_key

    @classmethod
    def for_message(
        cls,
        message: InboundMessage,
        *,
        ticket_id: str,
        priority: int,
        text: str,
        source: ReplySource,
        error_code: str | None = None,
        wait_until: float = 0.0,
        message_ids: Sequence[str] = (),
        reply_id: str = "",
    ) -> Reply:
        return cls(
            ticket_id=ticket_id,
            priority=priority,
            text=text,
            source=source,
            channel=message.channel,
            account=message.account,
            message_id=message.message_id,
            conversation_id=message.conversation_id,
            user_id=message.user_id,
            reply_to=dict(message.reply_to),
            error_code=error_code,
            wait_until=wait_until,
            message_ids=list(message_ids) if len(message_ids) > 1 else [],
            reply_id=reply_id,
            group=message.group,
        )

    @property
    def answered_ids(self) -> list[str]:
        """The ids of the messages this reply answers."""
        return self.message_ids or [self.message_id]

    def to_json(self) -> str:
        return _dumps({name: getattr(self, name) for name in _REPLY_FIELDS})

    @classmethod
    def from_json(cls, raw: str | bytes) -> Reply:
        data: dict[str, Any] = json.loads(raw)
        data["source"] = ReplySource(data["source"])
        return cls(**data)


DESK = "desk"  # the outbox "channel" of desk events: the staff side (Slack)


class DeskEventKind(StrEnum):
    """What a desk event tells the support staff."""

    ESCALATED = "escalated"  # a conversation was handed to people: post it
    CUSTOMER = "customer"  # the customer wrote while people own the conversation
    STATUS = "status"  # taken over, returned to the bot, resolved
    UNDELIVERED = "undelivered"  # a staff reply could not reach the customer
    FORGOTTEN = "forgotten"  # the customer's data was deleted: the hand-over is gone


@dataclass(slots=True)
class DeskEvent:
    """A notice for the support staff about one handed-over conversation.

    Goes out through the outbox like a reply (durable, retried, in order per conversation);
    the details of the hand-over are read from its record when the event is sent.
    """

    event_id: str
    kind: DeskEventKind
    conversation_key: str
    ticket_id: str
    text: str = ""
    actor: str = ""  # the staff member who changed the status
    status: str = ""
    # The desk's thread of the hand-over, for events sent once its record is gone (forgotten).
    thread: str = ""
    wait_until: float = 0.0  # no synchronous waiter: sent at once
    created_at: float = field(default_factory=time.time)

    channel = DESK

    @staticmethod
    def new_id() -> str:
        return "E" + secrets.token_hex(8)

    @property
    def delivery_id(self) -> str:
        return self.event_id

    @property
    def serial_key(self) -> str:
        # Apart from the customer's replies: a rate-limited Slack never delays those.
        return f"{DESK}:{self.conversation_key}"

    def to_json(self) -> str:
        return _dumps({name: getattr(self, name) for name in _DESK_FIELDS})

    @classmethod
    def from_json(cls, raw: str | bytes) -> DeskEvent:
        data: dict[str, Any] = json.loads(raw)
        data["kind"] = DeskEventKind(data["kind"])
        return cls(**data)


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_METADATA_FIELDS = tuple(f.name for f in fields(MessageMetadata))
_INBOUND_FIELDS = tuple(f.name for f in fields(InboundMessage))
_REPLY_FIELDS = tuple(f.name for f in fields(Reply))
_DESK_FIELDS = tuple(f.name for f in fields(DeskEvent))


@dataclass(slots=True)
class QueuedMessage:
    """A message as a worker holds it: the stream entry, its ticket and priority."""

    entry_id: str
    priority: int
    ticket_id: str
    message: InboundMessage
    enqueued_at: float
    deliveries: int = 1
    wait_until: float = 0.0
    # With burst merge: the ids of the messages answered together (this one's last).
    message_ids: tuple[str, ...] = ()
