"""The priority queue: three Redis streams with one consumer group, shared by every process.

Ingest side: :meth:`PriorityQueue.admit` dedupes, applies the admission limits (the queue's,
the sender's flood limit, the conversation's) and appends the message to the stream of its
priority in one Lua script, so a message is acknowledged to its sender only once it is durably
stored. Concurrent admissions are batched into one pipelined round trip (group commit): the
Redis round trip, not Python, dominates the ingest path.

Worker side: :meth:`read` always serves the most urgent non-empty priority first;
:meth:`finish` records the one reply, hands it to the outbox and acks the entry atomically;
:meth:`claim_stale` takes over the entries of crashed workers (XAUTOCLAIM) and reports how often
each was delivered, so the worker can dead-letter poison messages.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, Protocol

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError, ResponseError

from core.aio import slot_released
from core.errors import AdmissionRefused, StoreUnavailable
from core.keys import PRIORITIES, Keys
from core.ledger import DRAINED, utc_day
from core.models import (
    InboundMessage,
    QueuedMessage,
    Reply,
    ReplySource,
    language,
    spoken_language,
)
from core.store import GroupCommit, lua_script

log = logging.getLogger("peakdesk.queue")

GROUP = "workers"
LOG_EVERY_S: Final = 5.0  # at most one line this often about failed admissions


# Ticket ids: unix seconds, then this process's random tag and a counter (65,536 a second per
# process before it wraps). Unique across processes without a syscall per id: the earlier
# secrets.token_hex read os.urandom every time, 5% of the ingest CPU.
_PROCESS_TAG = secrets.token_hex(3)
_ticket_counter = itertools.count()


def new_ticket_id() -> str:
    """A short ticket id (19 characters), time-ordered to the second, safe to show customers."""
    return f"T{int(time.time()):x}{_PROCESS_TAG}{next(_ticket_counter) % 0x10000:04x}".upper()


@dataclass(frozen=True, slots=True)
class Admission:
    """``throttled``: over a limit, not queued; ``reason`` names it (``sender``: the sender's
    flood limit, ``conversation``: the conversation's unanswered messages); ``notice`` says
    whether the polite notice is this message's reply (the first of the window) or no reply
    comes."""

    status: Literal["queued", "duplicate", "throttled"]
    ticket_id: str
    priority: int
    notice: bool = False
    reason: Literal["", "sender", "conversation"] = ""


FLOOD_TEXT: Final = {
    "en": (
        "You are sending messages faster than we can read them (ticket {ticket}). We will"
        " answer what you sent before this; messages sent in the next minute are not read,"
        " so please wait a moment before writing again."
    ),
    "zh": (
        "您发送消息的速度过快（工单号 {ticket}）。我们会回复您此前的消息；"
        "接下来一分钟内发送的消息将不会被处理，请稍后再发送。"
    ),
}


CROWDED_TEXT: Final = {
    "en": (
        "Many messages in this conversation are waiting for an answer (ticket {ticket}). We"
        " will answer them in turn; messages sent until then are not read, so please write"
        " again once you have had an answer."
    ),
    "zh": (
        "本会话中有许多消息正在等待回复（工单号 {ticket}）。我们会依次回复；"
        "在此之前发送的消息将不会被处理，请在收到回复后再发送。"
    ),
}


@dataclass(frozen=True, slots=True)
class FloodLimit:
    """At most ``messages`` a sender per ``window_s`` seconds on average (GCRA: a burst of
    ``messages`` at once, then one every ``window_s / messages``). 0 messages: no limit."""

    messages: int = 20
    window_s: float = 60.0

    @property
    def interval_ms(self) -> float:
        return self.window_s * 1000.0 / self.messages if self.messages else 0.0

    @property
    def tolerance_ms(self) -> float:
        return self.interval_ms * (self.messages - 1)


class Acknowledger(Protocol):
    """Decides at admission whether a message gets an immediate acknowledgement."""

    def acknowledgement(self, priority: int, locale: str | None) -> str | None:
        """The acknowledgement's text (``{ticket}`` stands for the ticket id), or None."""

    def follow_up(self, locale: str | None) -> str:
        """The short acknowledgement of a conversation that has one out already."""

    def admitted(self, priority: int, acked: bool) -> None:
        """A message was queued, acknowledged or not."""


class InstantAnswerer(Protocol):
    """Answers some messages at admission, without queueing them (templated answers)."""

    async def answer(self, message: InboundMessage, priority: int) -> str | None:
        """The answer to send at once, or None to queue the message."""

    async def answered(self, message: InboundMessage, text: str) -> None:
        """The answer went out: remember the turn."""


# Burst items: ticket, priority and message JSON; JSON escapes control characters, so the
# separator cannot occur inside the message.
_SEP = "\x1f"
MAX_TURN_MESSAGES = 20
BURST_READ = 100  # burst items a turn looks at (a group chat holds several customers')


@dataclass(frozen=True, slots=True)
class BurstItem:
    """One unanswered message of a conversation, as its burst list holds it."""

    ticket_id: str
    priority: int
    message: InboundMessage

    @staticmethod
    def encode(ticket_id: str, priority: int, message_json: str) -> str:
        return f"{ticket_id}{_SEP}{priority}{_SEP}{message_json}"

    @classmethod
    def decode(cls, raw: str) -> BurstItem:
        ticket_id, priority, message = raw.split(_SEP, 2)
        return cls(ticket_id, int(priority), InboundMessage.from_json(message))


@dataclass(frozen=True, slots=True)
class Turn:
    """A worker's turn in one conversation: the messages of one customer it answers
    together, oldest first, and the burst list items they came from (``raw``; none when the
    entry is answered alone: burst merge off, or its item no longer listed)."""

    token: str
    items: tuple[BurstItem, ...]
    raw: tuple[str, ...] = ()

    def merged(self, entry: QueuedMessage) -> QueuedMessage:
        """``entry`` standing for the whole turn: the texts joined in order, the routing and
        ticket of the latest message (its reply answers them all), the entry's stream id."""
        if len(self.items) < 2:
            return entry
        last = self.items[-1].message
        order_ids = [i.message.metadata.order_id for i in self.items]
        metadata = replace(
            last.metadata, order_id=next((o for o in reversed(order_ids) if o), None)
        )
        message = replace(
            last, text="\n".join(i.message.text for i in self.items), metadata=metadata
        )
        return replace(
            entry,
            ticket_id=self.items[-1].ticket_id,
            message=message,
            message_ids=tuple(i.message.message_id for i in self.items),
        )


async def ensure_group(redis: Redis, stream: str) -> None:
    """Create ``stream`` and its consumer group unless they exist (reads from the start)."""
    try:
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def text_of(value: Any) -> str:
    """A Redis reply value as text (the clients here decode, fakeredis may not)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class LaneReader:
    """New entries (XREADGROUP ``>``) of one kind of stream in every lane, for a consumer.

    ``streams_of(lane)`` lists a lane's streams, most urgent first. A read looks at each
    stream without waiting, most urgent first and across the lanes starting at the next lane
    each time (none is starved), and returns the first entries found. When none has any, it
    blocks on one lane's streams (the next one in turn) for that lane's share of
    ``block_ms``: a new entry of another lane waits at most about ``block_ms``. With one lane
    of one stream, the blocking read alone does it.
    """

    def __init__(
        self, redis: Redis, keys: Keys, streams_of: Callable[[Keys], Sequence[str]]
    ) -> None:
        self.redis = redis
        self.lanes = keys.lanes
        self.streams_of = streams_of
        self._next = 0

    async def read(self, consumer: str, count: int, block_ms: int) -> Any:
        self._next = (self._next + 1) % len(self.lanes)
        lanes = self.lanes[self._next :] + self.lanes[: self._next]
        streams = [self.streams_of(lane) for lane in lanes]
        if len(lanes) * len(streams[0]) > 1:
            for position in range(len(streams[0])):
                for of_lane in streams:
                    found = await self.redis.xreadgroup(
                        GROUP, consumer, {of_lane[position]: ">"}, count=count
                    )
                    if found:
                        return found
        if not block_ms:
            return []
        found = await self.redis.xreadgroup(
            GROUP,
            consumer,
            dict.fromkeys(streams[0], ">"),
            count=count,
            block=max(10, block_ms // len(lanes)),
        )
        return found or []


class PriorityQueue:
    """Durable priority queue on Redis Streams (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        max_queue: int = 1_000_000,
        ceiling_ratio: float = 1.1,
        dedupe_ttl_s: int = 7 * 24 * 3600,
        reply_ttl_s: int = 7 * 24 * 3600,
        retry_after_s: int = 5,
        merge_bursts: bool = False,
        burst_ttl_s: int = 24 * 3600,
        acks: Acknowledger | None = None,
        instant: InstantAnswerer | None = None,
        flood: FloodLimit | None = None,
        conversation_limit: int = 0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.max_queue = max_queue
        self.hard_ceiling = int(max_queue * ceiling_ratio)
        self.dedupe_ttl_s = dedupe_ttl_s
        self.reply_ttl_s = reply_ttl_s
        self.retry_after_s = retry_after_s
        self.merge_bursts = merge_bursts
        self.burst_ttl_s = burst_ttl_s
        self.acks = acks
        self.instant = instant
        self.flood = flood or FloodLimit(0)
        # Messages of one conversation queued and not answered yet, at most (0: no limit):
        # what waits behind a crowded conversation, in Redis and in a worker's memory.
        self.conversation_limit = conversation_limit
        self._begin_script = redis.register_script(lua_script("begin.lua"))
        self._end_script = redis.register_script(lua_script("end_turn.lua"))
        limits = lua_script("limits.lua")
        self._admit_script = redis.register_script(limits + lua_script("admit.lua"))
        self._finish_script = redis.register_script(lua_script("finish.lua"))
        self._direct_script = redis.register_script(limits + lua_script("direct.lua"))
        # Group commit: whatever arrives while a batch is on the wire goes in the next one.
        self._admissions: GroupCommit[tuple[InboundMessage, int, float]] = GroupCommit(
            lambda batch: self._admit_batch(batch)
        )
        self._reader = LaneReader(redis, keys, lambda lane: lane.streams)
        self._claim_cursor: dict[str, str] = {}  # per stream: where the next claim scan starts
        self._failed, self._failure_logged_at = 0, -LOG_EVERY_S

    @property
    def keeps_burst_lists(self) -> bool:
        """Whether each conversation's unanswered messages are listed: to merge bursts, and
        to count them against the conversation limit."""
        return self.merge_bursts or self.conversation_limit > 0

    async def ensure_groups(self) -> None:
        """Create the streams and the consumer groups (idempotent)."""
        try:
            for lane in self.keys.lanes:
                for stream in (*lane.streams, lane.outbox):
                    await ensure_group(self.redis, stream)
        except RedisError as exc:
            raise StoreUnavailable(f"cannot create consumer groups: {exc}") from exc

    # -- ingest ---------------------------------------------------------------------------

    async def admit(
        self, message: InboundMessage, priority: int, *, wait_until: float = 0.0
    ) -> Admission:
        """Durably queue ``message`` once; a repeated ``dedupe_key`` returns the first ticket.

        Raises AdmissionRefused over the limit and StoreUnavailable when Redis fails: in both
        cases nothing was stored and the sender must not be told otherwise.

        A message the ``instant`` answerer answers (a templated answer while the queue is
        long) is answered at once instead, unless its conversation has messages waiting.
        """
        if self.instant is not None and not wait_until:
            text = await self.instant.answer(message, priority)
            if text is not None:
                done = await self.answer_if_idle(message, text, ReplySource.TEMPLATE, priority)
                if done is not None:
                    if done.status == "queued":
                        await self.instant.answered(message, text)
                    return done
        try:
            result = await self._admissions.call((message, priority, wait_until))
        except Exception as exc:
            # Redis down, a cluster slot not covered (RedisClusterException is no RedisError),
            # this one script failing (OOM, say), or a bug: whatever it is, the message hears
            # back (503: not stored).
            self._log_failure(exc, 1)
            raise StoreUnavailable("queue store unavailable") from exc
        status, value = text_of(result[0]), text_of(result[1])
        if status == "full":
            raise AdmissionRefused(int(value), self.retry_after_s)
        if status == "duplicate":
            return Admission("duplicate", value, priority)
        if status == "throttled":
            return self._throttled(result, priority)
        if self.acks is not None:
            self.acks.admitted(priority, status == "acked")
        return Admission("queued", value, priority)

    def _log_failure(self, exc: Exception, messages: int) -> None:
        """One line per LOG_EVERY_S about refused admissions, however many fail: a Redis
        outage at a peak would otherwise write thousands of lines a second."""
        self._failed += messages
        now = time.monotonic()
        if now - self._failure_logged_at < LOG_EVERY_S:
            return
        level = logging.WARNING if isinstance(exc, RedisError) else logging.ERROR
        log.log(
            level,
            "admission failed: %s (%d messages refused since the last line)",
            type(exc).__name__,
            self._failed,
        )
        self._failed, self._failure_logged_at = 0, now

    async def _admit_batch(self, batch: Sequence[tuple[InboundMessage, int, float]]) -> list[Any]:
        """admit.lua for each (message, priority, wait-until), in one round trip (results in
        order, errors as values)."""
        now = str(time.time())
        calls = [self._admission(message, p, wait_until, now) for message, p, wait_until in batch]
        return await self._evalsha_all(self._admit_script, calls)

    async def _evalsha_all(
        self, script: AsyncScript, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """Run ``script`` once per (keys, args) in one pipelined round trip; results in order,
        errors as values.

        EVALSHA straight away (redis-py's script helper sends SCRIPT EXISTS with every call),
        as a raw command: RedisCluster's pipeline refuses its evalsha() method, not the
        command, which it routes by its keys (one slot a call). A server without the script
        (restarted, or a promoted replica) answers NOSCRIPT, which did nothing: the script is
        loaded and just those calls are sent again. The others were done: on a cluster, other
        masters had the script, and an admission sent again would find its own dedupe key and
        answer "duplicate".
        """

        async def send(chosen: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys, args in chosen:
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                return list(await pipe.execute(raise_on_error=False))

        results = await send(calls)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            await self.redis.script_load(script.script)
            again = await send([calls[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    def _admission(
        self, message: InboundMessage, priority: int, wait_until: float, now: str
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of admit.lua for one message."""
        limit = self.max_queue if priority >= 2 else self.hard_ceiling
        # Each lane admits its share of the limit (conversations spread evenly).
        lane_limit = -(-limit // self.keys.shards)
        ticket_id = self.new_ticket(message)
        message_json = message.to_json()
        conversation = message.conversation_key
        sender = message.sender_key
        lane = self.keys.for_conversation(conversation)
        streams = lane.streams
        keys = [
            lane.seen(message.dedupe_key),
            *streams,
            streams[priority],
            self.keys.burst(conversation),
            self.keys.acked(conversation),
            lane.outbox,
            self.keys.handover(conversation),
            lane.flood(sender),
            lane.flood_notice(sender),
            self.keys.reply(ticket_id),
            self.keys.crowded_notice(conversation),
        ]
        args = [
            ticket_id,
            lane_limit,
            self.dedupe_ttl_s,
            message_json,
            now,
            repr(wait_until),
            BurstItem.encode(ticket_id, priority, message_json) if self.keeps_burst_lists else "",
            self.burst_ttl_s,
            *self._acknowledgements(message, ticket_id, priority, wait_until),
            *self._flood_args(message, ticket_id, priority),
            self.reply_ttl_s,
            self.conversation_limit,
            self._notice(CROWDED_TEXT, self.conversation_limit, message, ticket_id, priority),
        ]
        return keys, args

    def _flood_args(self, message: InboundMessage, ticket_id: str, priority: int) -> list[Any]:
        """The flood limit's arguments of admit.lua and direct.lua: interval and tolerance
        (ms), the notice and the notice window (s)."""
        return [
            self.flood.interval_ms,
            self.flood.tolerance_ms,
            self._notice(FLOOD_TEXT, self.flood.messages, message, ticket_id, priority),
            math.ceil(self.flood.window_s),
        ]

    @staticmethod
    def _notice(
        texts: dict[str, str], limit: int, message: InboundMessage, ticket_id: str, priority: int
    ) -> str:
        """The JSON of the notice a message over a limit gets (the first of a window), in the
        customer's language; '' when there is no limit."""
        if not limit:
            return ""
        spoken = spoken_language(message.text, message.metadata.locale or "")
        text = texts[language(spoken)].format(ticket=ticket_id)
        return Reply.for_message(
            message, ticket_id=ticket_id, priority=priority, text=text, source=ReplySource.NOTICE
        ).to_json()

    @staticmethod
    def _throttled(result: Sequence[Any], priority: int) -> Admission:
        """The admission of a message a script refused: {'throttled', ticket, notice, reason}."""
        ticket_id, notice, reason = (text_of(value) for value in result[1:4])
        over: Literal["sender", "conversation"] = (
            "conversation" if reason == "conversation" else "sender"
        )
        return Admission("throttled", ticket_id, priority, notice == "1", over)

    def _acknowledgements(
        self, message: InboundMessage, ticket_id: str, priority: int, wait_until: float
    ) -> tuple[str, str]:
        """The JSON of the acknowledgement and of its short form (for a conversation with one
        out already), or two '' when the answer will come soon enough (or a synchronous
        waiter is there for it)."""
        if self.acks is None or wait_until:
            return "", ""
        locale = message.metadata.locale
        text = self.acks.acknowledgement(priority, locale)
        if text is None:
            return "", ""
        return tuple(  # type: ignore[return-value]
            Reply.for_message(
                message,
                ticket_id=ticket_id,
                priority=priority,
                text=variant.format(ticket=ticket_id),
                source=ReplySource.ACK,
                reply_id=f"A{ticket_id}",
            ).to_json()
            for variant in (text, self.acks.follow_up(locale))
        )

    async def answer_directly(
        self,
        message: InboundMessage,
        text: str,
        source: ReplySource,
        priority: int = 2,
        *,
        ticket_id: str | None = None,
    ) -> Admission:
        """Answer ``message`` at once with ``text`` (no LLM): deduped, stored, sent once.

        For what a channel answers itself (commands, unsupported content). Like :meth:`admit`
        it applies the sender's flood limit (``throttled``: the flood notice instead, or no
        reply) and raises StoreUnavailable when nothing could be stored.
        """
        admission = await self._direct(message, text, source, priority, ticket_id, False)
        assert admission is not None
        return admission

    async def answer_if_idle(
        self, message: InboundMessage, text: str, source: ReplySource, priority: int
    ) -> Admission | None:
        """:meth:`answer_directly`, unless the conversation has messages waiting or being
        answered (None: nothing done): the answer would overtake theirs."""
        return await self._direct(message, text, source, priority, None, True)

    async def _direct(
        self,
        message: InboundMessage,
        text: str,
        source: ReplySource,
        priority: int,
        ticket_id: str | None,
        only_if_idle: bool,
    ) -> Admission | None:
        ticket_id = ticket_id or self.new_ticket(message)
        reply = Reply.for_message(
            message, ticket_id=ticket_id, priority=priority, text=text, source=source
        )
        lane = self.keys.for_conversation(message.conversation_key)
        keys = [
            lane.seen(message.dedupe_key),
            self.keys.reply(ticket_id),
            lane.outbox,
            lane.stats_day(utc_day()),
            lane.flood(message.sender_key),
            lane.flood_notice(message.sender_key),
        ]
        if only_if_idle:
            conversation = message.conversation_key
            keys += [
                self.keys.burst(conversation),
                self.keys.turn_lock(conversation),
                self.keys.handover(conversation),
            ]
        args = [
            ticket_id,
            self.dedupe_ttl_s,
            reply.to_json(),
            self.reply_ttl_s,
            source,
            str(time.time()),
            *self._flood_args(message, ticket_id, priority),
        ]
        try:
            result = await self._direct_script(keys=keys, args=args)
        except RedisError as exc:
            raise StoreUnavailable("queue store unavailable") from exc
        status, value = text_of(result[0]), text_of(result[1])
        if status == "busy":
            return None
        if status == "throttled":
            return self._throttled(result, priority)
        return Admission("duplicate" if status == "duplicate" else "queued", value, priority)

    # -- worker side ----------------------------------------------------------------------

    def seen_key(self, message: InboundMessage) -> str:
        """The key that marks ``message`` as admitted (its dedupe key)."""
        return self.keys.for_conversation(message.conversation_key).seen(message.dedupe_key)

    def new_ticket(self, message: InboundMessage) -> str:
        """A new ticket id for ``message``: it names the conversation's lane."""
        return new_ticket_id() + self.keys.ticket_suffix(message.conversation_key)

    async def read(self, consumer: str, count: int, block_ms: int = 0) -> list[QueuedMessage]:
        """Take up to ``count`` new entries, from the most urgent non-empty priority first
        (of any lane: each read starts at the next lane, so none is starved)."""
        found = await self._reader.read(consumer, count, block_ms)
        return sorted(self._parse_read(found), key=lambda q: q.priority)

    def _parse_read(self, found: Any) -> list[QueuedMessage]:
        out: list[QueuedMessage] = []
        for stream, entries in found:
            priority = int(text_of(stream).rsplit(":", 1)[1])
            out.extend(
                self._parse_entry(priority, eid, fields) for eid, fields in entries if fields
            )
        return out

    @staticmethod
    def _parse_entry(priority: int, entry_id: Any, fields: dict[str, str]) -> QueuedMessage:
        return QueuedMessage(
            entry_id=text_of(entry_id),
            priority=priority,
            ticket_id=fields["t"],
            message=InboundMessage.from_json(fields["m"]),
            enqueued_at=float(fields["e"]),
            wait_until=float(fields.get("w") or 0.0),
        )

    async def heartbeat(self, consumer: str, entries: Sequence[QueuedMessage]) -> None:
        """Reset the idle time of entries still being worked on, so nobody claims them."""
        by_stream: dict[str, list[Any]] = {}
        for entry in entries:
            by_stream.setdefault(self.stream_of(entry), []).append(entry.entry_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xclaim(stream, GROUP, consumer, 0, ids, justid=True)
            await pipe.execute()

    def stream_of(self, entry: QueuedMessage) -> str:
        """The stream (of its lane and priority) an entry was read from."""
        return self.keys.for_conversation(entry.message.conversation_key).stream(entry.priority)

    async def claim_stale(
        self, consumer: str, min_idle_ms: int, count: int = 50
    ) -> list[QueuedMessage]:
        """Take over entries idle for ``min_idle_ms`` (their worker died), most urgent first.

        XAUTOCLAIM looks at ``10 * count`` pending entries a call: each stream's scan goes on
        where the last call stopped, so a dead worker's entries behind many live ones in
        progress are found on a later call, not never.
        """
        claimed: list[QueuedMessage] = []
        for priority, lane in ((p, lane) for p in PRIORITIES for lane in self.keys.lanes):
            stream = lane.stream(priority)
            cursor, entries, *_ = await self.redis.xautoclaim(
                stream,
                GROUP,
                consumer,
                min_idle_time=min_idle_ms,
                start_id=self._claim_cursor.get(stream, "0-0"),
                count=count,
            )
            self._claim_cursor[stream] = text_of(cursor)
            live = [(eid, fields) for eid, fields in entries if fields]
            if not live:
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                for eid, _ in live:
                    pipe.xpending_range(stream, GROUP, min=eid, max=eid, count=1)
                pending = await pipe.execute()
            for (eid, fields), info in zip(live, pending, strict=True):
                entry = self._parse_entry(priority, eid, fields)
                entry.deliveries = int(info[0]["times_delivered"]) if info else 1
                claimed.append(entry)
            if len(claimed) >= count:
                break
        return claimed

    async def stored_reply(self, ticket_id: str) -> Reply | None:
        raw = await self.redis.get(self.keys.reply(ticket_id))
        return Reply.from_json(raw) if raw else None

    async def begin_turn(
        self, entry: QueuedMessage, token: str, lock_ttl_ms: int, poll_s: float = 0.05
    ) -> Turn | None:
        """Take the entry's conversation for one turn (waiting while a worker of any process
        has it, without holding the worker's slot), or None when the entry was answered
        already (with an earlier message of its burst) or passed to people.

        With burst merge, the turn answers the unanswered messages of the entry's customer in
        this conversation (in a group chat, other members' messages wait for their own turns),
        oldest first, at most MAX_TURN_MESSAGES: when a flood puts the entry further back, it
        is answered with the oldest ones and those in between follow in later turns. Without,
        it answers the entry alone.
        """
        conversation = entry.message.conversation_key
        keys = [
            self.keys.reply(entry.ticket_id),
            self.keys.held(entry.ticket_id),
            self.keys.turn_lock(conversation),
            self.keys.burst(conversation),
        ]
        reply_prefix = self.keys.for_conversation(conversation).reply_prefix
        args: list[str | int] = [token, lock_ttl_ms, BURST_READ, reply_prefix]
        found = await self._begin_script(keys=keys, args=args)
        if text_of(found[0]) == "busy":
            # Another process answers the conversation: waiting for it is no LLM call, so
            # the worker may start another message meanwhile.
            async with slot_released():
                while text_of(found[0]) == "busy":
                    await asyncio.sleep(min(poll_s, max(0.001, int(found[1]) / 1000)))
                    found = await self._begin_script(keys=keys, args=args)
        if text_of(found[0]) == "done":
            return None
        raw = [text_of(item) for item in found[1:]]
        try:
            items = [BurstItem.decode(text) for text in raw]
        except (ValueError, TypeError):  # unreadable (another version's): give the turn back
            await self._end_script(keys=self._turn_keys(conversation), args=[token, 0, 0, 0])
            raise
        mine = [
            (item, text)
            for item, text in zip(items, raw, strict=True)
            if item.message.user_id == entry.message.user_id
        ]
        position = next(
            (i for i, (item, _) in enumerate(mine) if item.ticket_id == entry.ticket_id), None
        )
        if position is None:  # not listed (no list kept, or it expired): the entry alone
            return Turn(token, (BurstItem(entry.ticket_id, entry.priority, entry.message),))
        if not self.merge_bursts:  # listed for the conversation limit only
            return Turn(token, (mine[position][0],), (mine[position][1],))
        chosen = mine[:MAX_TURN_MESSAGES]
        if position >= MAX_TURN_MESSAGES:
            chosen = [*mine[: MAX_TURN_MESSAGES - 1], mine[position]]
        return Turn(token, tuple(i for i, _ in chosen), tuple(r for _, r in chosen))

    async def renew_turns(self, turns: Sequence[tuple[str, str]], lock_ttl_ms: int) -> list[str]:
        """Keep the turn locks (conversation, token) of work in progress; returns the tokens
        not renewed: ended meanwhile, or lapsed (their finish then stores nothing)."""
        renewed = await self._evalsha_all(
            self._end_script,
            [
                (self._turn_keys(conversation), (token, lock_ttl_ms, 0, 0))
                for conversation, token in turns
            ],
        )
        if error := next((r for r in renewed if isinstance(r, Exception)), None):
            raise error
        return [token for (_, token), ok in zip(turns, renewed, strict=True) if not ok]

    async def end_turn(self, entry: QueuedMessage, turn: Turn, *, held: bool = False) -> None:
        """End a turn that stored no reply: on failure just give the conversation back (the
        entry is retried); with ``held``, the messages went to people: drop them from the
        burst list and mark the others held (their entries are acked without a second
        notice)."""
        keys = self._turn_keys(entry.message.conversation_key)
        args: list[Any] = [turn.token, 0, self.reply_ttl_s, int(held)]
        if held:
            keys += [self.keys.held(item.ticket_id) for item in turn.items[:-1]]
            args += turn.raw
        await self._end_script(keys=keys, args=args)

    def _turn_keys(self, conversation: str) -> list[str]:
        return [
            self.keys.burst(conversation),
            self.keys.turn_lock(conversation),
            self.keys.acked(conversation),
        ]

    async def ack(self, entry: QueuedMessage) -> None:
        """Ack an entry that needs no reply of its own (answered with its burst)."""
        lane = self.keys.for_conversation(entry.message.conversation_key)
        stream = lane.stream(entry.priority)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, GROUP, entry.entry_id)
            pipe.xdel(stream, entry.entry_id)
            pipe.hincrby(lane.stats_day(utc_day()), f"{DRAINED}{entry.priority}", 1)
            await pipe.execute()

    async def finish(
        self,
        entry: QueuedMessage,
        reply: Reply,
        *,
        turn: Turn | None = None,
        dead_reason: str | None = None,
    ) -> int:
        """Store ``reply`` as the one answer to ``entry`` (and to the other messages of its
        ``turn``), queue it for delivery, ack the entry and end the turn.

        The answer is counted in today's per-source counters (:class:`core.ledger.Ledger`).

        Returns 1 when stored; 0 when the reply's ticket had a reply already (processed
        twice: nothing new is sent); -1 when the turn's lock lapsed and another worker has
        the conversation (nothing done: the entry is retried). With ``dead_reason`` the entry
        is also copied to the dead letters.
        """
        conversation = entry.message.conversation_key
        lane = self.keys.for_conversation(conversation)
        keys = [
            self.keys.reply(reply.ticket_id),
            lane.outbox,
            lane.stream(entry.priority),
            lane.stats_day(utc_day()),
            self.keys.burst(conversation),
            self.keys.turn_lock(conversation),
            self.keys.acked(conversation),
            lane.dead_letters,
        ]
        args: list[Any] = [
            GROUP,
            entry.entry_id,
            reply.to_json(),
            self.reply_ttl_s,
            reply.source.value,
            turn.token if turn is not None else "",
            dead_reason or "",
            entry.message.to_json() if dead_reason else "",
            entry.priority,
        ]
        if turn is not None:
            keys += [self.keys.reply(item.ticket_id) for item in turn.items[:-1]]
            args += turn.raw
        return int(await self._finish_script(keys=keys, args=args))

    async def depths(self) -> dict[int, int]:
        """Messages queued or in progress, per priority."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for lane in self.keys.lanes:
                for stream in lane.streams:
                    pipe.xlen(stream)
            lengths = await pipe.execute()
        return {p: sum(int(n) for n in lengths[p :: len(PRIORITIES)]) for p in PRIORITIES}
