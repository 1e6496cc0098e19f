"""Hand-over to people: which conversations people answer instead of the bot, for every process.

A conversation is *escalated* (the customer asked for a person, the bot could not help, its
answers kept failing, an urgent complaint): its record is created in Redis and the support desk
(Slack) is told through the outbox. While the record is open (``requested`` or ``owned``) the
bot does not answer: each new customer message is passed to the desk instead (:meth:`hold`).
People take the conversation over, reply (their replies go out through the channel the
customer used), give it back to the bot or resolve it. Every change is one Lua script, so all
processes agree on who answers and nothing is told twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final, Literal, cast

from redis.asyncio import Redis

from core.keys import Keys
from core.ledger import count_open_handovers
from core.models import (
    DeskEvent,
    DeskEventKind,
    InboundMessage,
    QueuedMessage,
    Reply,
    ReplySource,
    language,
)
from core.queue import GROUP
from core.state import ConversationState, Turn
from core.store import lua_script

REQUESTED: Final = "requested"  # waiting for a person
OWNED: Final = "owned"  # a person answers
RETURNED: Final = "bot"  # given back to the bot
RESOLVED: Final = "resolved"
OPEN: Final = (REQUESTED, OWNED)
TRANSCRIPT_TURNS: Final = 10  # messages of history shown to people on a hand-over

Operation = Literal["take", "release", "resolve"]
_STATUS_AFTER: Final = {"take": OWNED, "release": RETURNED, "resolve": RESOLVED, "reply": OWNED}

NOTICE: Final = {
    "en": "A member of our support team will take over this conversation and answer you here"
    " (ticket {ticket}).",
    "zh": "已为您转接人工客服，客服人员会在此回复您（工单号 {ticket}）。",
}
# A customer who asks for a person again soon after having their conversation forgotten: the
# desk was told of it lately (the escalation interval), and nothing is posted again.
DEFERRED_NOTICE: Final = {
    "en": "This conversation was deleted at your request a moment ago, so it was not passed to"
    " our support team again. Please write again in a few minutes if you still want a person"
    " (ticket {ticket}).",
    "zh": "该会话刚刚已按您的要求删除，因此未再次转接人工客服。如仍需人工服务，请几分钟后再发送消息"
    "（工单号 {ticket}）。",
}
WAIT_NOTICE: Final = {
    "en": " Estimated wait: about {minutes} min.",
    "zh": "预计等待约 {minutes} 分钟。",
}


def escalation_notice(
    escalation: Escalation, ticket_id: str, wait_s: float | None, locale: str | None
) -> str:
    """What the customer is told after an escalation of a staffed desk: that a person will
    answer, unless nobody was told (:attr:`Escalation.DEFERRED`)."""
    if escalation is Escalation.DEFERRED:
        return DEFERRED_NOTICE[language(locale)].format(ticket=ticket_id)
    return handover_notice(ticket_id, wait_s, locale)


def staff_reply_id(source: str) -> str:
    """The ``reply_id`` of a staff message: stable for one message of the desk (its Slack
    channel and ts, say), so a retried event maps to the same reply, and opaque to gateways."""
    return "H" + hashlib.blake2b(source.encode(), digest_size=10).hexdigest()


class Escalation(IntEnum):
    """What :meth:`HandoverDesk.escalate` did."""

    UNSTAFFED = -2  # no desk: nobody can be told
    DEFERRED = -1  # posted to the desk lately and forgotten since: nobody was told now
    ALREADY = 0  # people have the conversation already (or this ticket escalated it)
    POSTED = 1  # a new hand-over, posted to the desk
    REOPENED = 2  # posted lately: the closed hand-over reopened in its thread


def handover_notice(ticket_id: str, wait_s: float | None, locale: str | None) -> str:
    """What the customer is told when people take over: the ticket, the wait when known."""
    lang = language(locale)
    text = NOTICE[lang].format(ticket=ticket_id)
    if wait_s is not None:
        text += WAIT_NOTICE[lang].format(minutes=max(1, round(wait_s / 60)))
    return text


@dataclass(frozen=True, slots=True)
class Handover:
    """The record of one handed-over conversation."""

    conversation_key: str
    status: str
    ticket_id: str
    reason: str
    priority: int
    owner: str
    thread: str  # where the desk discusses it (Slack: "<channel>:<ts>"), "" until posted
    requested_at: float
    channel: str
    account: str
    conversation_id: str
    user_id: str
    message_id: str  # the customer's latest message: staff replies answer it
    reply_to: dict[str, str]
    order_id: str
    locale: str
    transcript: list[Turn] = field(default_factory=list)
    group: bool = False  # the conversation is a group's (see core.models.conversation_key)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @classmethod
    def from_record(cls, conversation_key: str, record: dict[str, str]) -> Handover:
        return cls(
            conversation_key=conversation_key,
            status=record.get("status", ""),
            ticket_id=record.get("ticket", ""),
            reason=record.get("reason", ""),
            priority=int(record.get("priority") or 2),
            owner=record.get("owner", ""),
            thread=record.get("thread", ""),
            requested_at=float(record.get("requested_at") or 0.0),
            channel=record.get("channel", ""),
            account=record.get("account", ""),
            conversation_id=record.get("conversation_id", ""),
            user_id=record.get("user_id", ""),
            message_id=record.get("message_id", ""),
            reply_to=json.loads(record.get("reply_to") or "{}"),
            order_id=record.get("order_id", ""),
            locale=record.get("locale", ""),
            transcript=json.loads(record.get("transcript") or "[]"),
            group=record.get("group") == "1",
        )


@dataclass(frozen=True, slots=True)
class Change:
    """The outcome of :meth:`HandoverDesk.change` or :meth:`HandoverDesk.staff_reply`."""

    outcome: Literal["unknown", "duplicate", "changed", "unchanged"]
    previous_owner: str


class HandoverDesk:
    """Hand-over records and transitions in Redis (see the module docstring).

    ``staffed=False`` (no desk configured) turns escalation off: nobody would answer, so the
    bot keeps answering every conversation.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        staffed: bool = True,
        ttl_s: int = 7 * 24 * 3600,
        failures_ttl_s: int = 3600,
        escalate_interval_s: int = 600,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.staffed = staffed
        self.ttl_s = ttl_s
        self.failures_ttl_s = failures_ttl_s
        self.escalate_interval_s = escalate_interval_s
        self._escalate = redis.register_script(lua_script("escalate.lua"))
        self._hold = redis.register_script(lua_script("hold.lua"))
        self._change = redis.register_script(lua_script("handover.lua"))
        self._open_count = redis.register_script(lua_script("open_handovers.lua"))

    # -- the bot's side ---------------------------------------------------------------------

    async def escalate(
        self,
        message: InboundMessage,
        *,
        ticket_id: str,
        priority: int,
        reason: str,
        order_id: str | None = None,
        history: Sequence[Turn] = (),
        answer: str = "",
        by_staff: bool = False,
    ) -> Escalation:
        """Hand the conversation of ``message`` to people; ALREADY when it was (by this ticket
        or since earlier), UNSTAFFED when no desk is staffed.

        People are shown the last turns of ``history``, the message and the bot's ``answer``.
        A conversation is posted to the desk as a new hand-over at most once per
        ``escalate_interval_s`` (unless staff asked, ``by_staff``): escalated again within it,
        its closed hand-over reopens in the desk's thread (REOPENED), and with no record left
        (forgotten) nothing happens (DEFERRED: the customer must not be told people answer).
        """
        if not self.staffed:
            return Escalation.UNSTAFFED
        transcript = list(history[-TRANSCRIPT_TURNS:])
        if message.text:
            transcript.append({"role": "user", "content": message.text})
        if answer:
            transcript.append({"role": "assistant", "content": answer})
        conversation = message.conversation_key
        event = DeskEvent(DeskEvent.new_id(), DeskEventKind.ESCALATED, conversation, ticket_id)
        reopened = DeskEvent(
            DeskEvent.new_id(), DeskEventKind.STATUS, conversation, ticket_id, status=REQUESTED
        )
        record = {
            "reason": reason,
            "priority": str(priority),
            "channel": message.channel,
            "account": message.account,
            "conversation_id": message.conversation_id,
            "user_id": message.user_id,
            "message_id": message.message_id,
            "reply_to": json.dumps(message.reply_to),
            "order_id": order_id or message.metadata.order_id or "",
            "locale": message.metadata.locale or "",
            "transcript": json.dumps(transcript, ensure_ascii=False),
            "group": "1" if message.group else "",
        }
        lane = self.keys.for_conversation(conversation)
        created = await self._escalate(
            keys=[
                self.keys.handover(conversation),
                lane.handovers_open,
                lane.outbox,
                self.keys.handover_ticket(ticket_id),
                self.keys.escalated(conversation),
            ],
            args=[
                ticket_id,
                repr(time.time()),
                conversation,
                event.to_json(),
                self.ttl_s,
                0 if by_staff else self.escalate_interval_s,
                reopened.to_json(),
                *(item for pair in record.items() for item in pair),
            ],
        )
        return Escalation(int(created))

    async def hold(self, entry: QueuedMessage) -> bool:
        """Pass ``entry`` to the people who have its conversation and ack it (instead of an
        answer). False when the conversation is not with people: answer it as usual."""
        message = entry.message
        event = DeskEvent(
            DeskEvent.new_id(),
            DeskEventKind.CUSTOMER,
            message.conversation_key,
            entry.ticket_id,
            text=message.text,
        )
        lane = self.keys.for_conversation(message.conversation_key)
        held = await self._hold(
            keys=[
                self.keys.handover(message.conversation_key),
                self.keys.held(entry.ticket_id),
                lane.outbox,
                lane.stream(entry.priority),
            ],
            args=[
                GROUP,
                entry.entry_id,
                entry.ticket_id,
                event.to_json(),
                self.ttl_s,
                message.message_id,
                json.dumps(message.reply_to),
            ],
        )
        return bool(held)

    async def count_failure(self, conversation_key: str) -> int:
        """Count a failed answer (a fallback) of the conversation; returns the recent count."""
        key = self.keys.failures(conversation_key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.failures_ttl_s)
            count, _ = await pipe.execute()
        return int(count)

    async def estimated_wait(self) -> float | None:
        """Seconds people took to take over lately (moving average), None before the first."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for lane in self.keys.lanes:
                pipe.hget(lane.handover_pickup, "avg")
            averages = [float(a) for a in await pipe.execute() if a is not None]
        return sum(averages) / len(averages) if averages else None

    # -- the people's side ------------------------------------------------------------------

    async def get(self, conversation_key: str) -> Handover | None:
        record = cast(
            dict[str, str], await self.redis.hgetall(self.keys.handover(conversation_key))
        )
        return Handover.from_record(conversation_key, record) if record else None

    async def find(self, ticket_id: str) -> str | None:
        """The conversation of a ticket: one that escalated it, else any answered in it."""
        conversation = await self.redis.get(self.keys.handover_ticket(ticket_id))
        if conversation is not None:
            return cast(str, conversation)
        raw = await self.redis.get(self.keys.reply(ticket_id))
        return Reply.from_json(raw).conversation_key if raw else None

    async def find_by_thread(self, thread: str) -> str | None:
        return cast(str | None, await self.redis.get(self.keys.handover_thread(thread)))

    async def set_thread(self, conversation_key: str, thread: str) -> None:
        # Not one transaction: the thread's index is shared by the lanes (a staff reply names
        # only its thread), the record lives in the conversation's lane.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.handover(conversation_key), "thread", thread)
            pipe.set(self.keys.handover_thread(thread), conversation_key, ex=self.ttl_s)
            await pipe.execute()

    async def change(self, conversation_key: str, op: Operation, actor: str) -> Change:
        """Take over (``take``), give back to the bot (``release``) or ``resolve``."""
        return await self._run(op, conversation_key, actor)

    async def staff_reply(
        self, conversation_key: str, actor: str, text: str, reply_id: str
    ) -> Change:
        """Send a person's message to the customer through the customer's channel, once per
        ``reply_id``; it takes the conversation over when nobody owns it."""
        handover = await self.get(conversation_key)
        if handover is None:
            return Change("unknown", "")
        reply = Reply(
            ticket_id=handover.ticket_id,
            priority=handover.priority,
            text=text,
            source=ReplySource.HUMAN,
            channel=handover.channel,
            account=handover.account,
            message_id=handover.message_id,
            conversation_id=handover.conversation_id,
            user_id=handover.user_id,
            reply_to=handover.reply_to,
            reply_id=reply_id,
            group=handover.group,
        )
        return await self._run("reply", conversation_key, actor, reply)

    async def _run(
        self, op: str, conversation_key: str, actor: str, reply: Reply | None = None
    ) -> Change:
        record = self.keys.handover(conversation_key)
        ticket = cast(str, await self.redis.hget(record, "ticket") or "")
        event = DeskEvent(
            DeskEvent.new_id(),
            DeskEventKind.STATUS,
            conversation_key,
            ticket,
            actor=actor,
            status=_STATUS_AFTER[op],
        )
        args: list[Any] = [op, actor, repr(time.time()), conversation_key, event.to_json()]
        args.append(self.ttl_s)
        if reply is not None:
            args.append(reply.to_json())
        lane = self.keys.for_conversation(conversation_key)
        outcome, owner = await self._change(
            keys=[
                record,
                lane.handovers_open,
                lane.outbox,
                lane.handover_pickup,
                lane.staff_message(reply.reply_id if reply else "-"),
            ],
            args=args,
        )
        return Change(outcome, owner)

    async def open_count(self) -> int:
        """The hand-overs waiting for or owned by people (those whose record expired are
        dropped from the open set on the way)."""
        return await count_open_handovers(self._open_count, self.keys)

    # -- forgetting -------------------------------------------------------------------------

    async def forget(self, conversation_key: str) -> int:
        """Delete the conversation's hand-over (README: Customer data): its record with the
        transcript, its ticket and thread indexes and its place in the open set; an open
        hand-over is thereby closed (the bot answers what comes next). The desk is told in
        the hand-over's thread. Returns how many keys existed."""
        record = self.keys.handover(conversation_key)
        ticket, thread = cast(list[str | None], await self.redis.hmget(record, "ticket", "thread"))
        lane = self.keys.for_conversation(conversation_key)
        # One slot: the ticket's lane is the conversation's (its tickets are made so).
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(record, *([self.keys.handover_ticket(ticket)] if ticket else []))
            pipe.zrem(lane.handovers_open, conversation_key)
            if thread and self.staffed:
                event = DeskEvent(
                    DeskEvent.new_id(),
                    DeskEventKind.FORGOTTEN,
                    conversation_key,
                    ticket or "",
                    thread=thread,
                )
                pipe.xadd(lane.outbox, {"d": event.to_json()})
            deleted, *_ = await pipe.execute()
        if thread:  # the thread index is shared by the lanes (another slot)
            deleted += await self.redis.delete(self.keys.handover_thread(thread))
        return int(deleted)


class ConversationForgetter:
    """Deletes what is stored about one conversation when its customer asks (README:
    Customer data): its state (history, context...) and its hand-over."""

    def __init__(self, state: ConversationState, desk: HandoverDesk) -> None:
        self.state = state
        self.desk = desk

    async def forget(self, conversation_key: str) -> int:
        """Returns how many keys existed."""
        return await self.state.forget(conversation_key) + await self.desk.forget(conversation_key)
