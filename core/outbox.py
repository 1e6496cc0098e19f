"""The outbox: replies on their way back out through the channel the customer used.

A worker stores each reply in the outbox stream atomically with acking the inbound message
(see ``PriorityQueue.finish``). The :class:`Outbox` consumes that stream with the same consumer
group mechanics as the inbound queue, so a reply survives a crash of the process sending it.

A reply goes out exactly one way. A synchronous waiter (the webhook's ``?wait=N``) and the
asynchronous sender race for a per-ticket claim with ``SET NX``; whoever wins delivers it.
The sender leaves the waiter the head start it asked for (``Reply.wait_until``). The waiters
of a process share one watch of the replies (:class:`core.waiters.ReplyWatcher`).

The same stream carries desk events (:class:`core.models.DeskEvent`: notices for the support
staff about handed-over conversations) to the desk's sender, with the same guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.aio import SerialByKey, wait_event
from core.errors import DeliveryError
from core.keys import Keys
from core.logcontext import about
from core.metrics import Metrics
from core.models import DeskEvent, DeskEventKind, Reply, ReplySource
from core.queue import GROUP, LaneReader, ensure_group, text_of
from core.waiters import ReplyWatcher

log = logging.getLogger("peakdesk.outbox")

# Deliveries an outbox holds per slot, counting those that only wait: for the retry of a
# channel that is down, or behind an earlier reply of their conversation.
WAITING_FACTOR = 20

# Values of the per-ticket delivery claim.
SYNC = "sync"  # a synchronous waiter took the reply
SENDING = "sending"  # the outbox is sending it (a crash here means: send again)
SENT = "sent"  # the channel took it


class _LeftPending(Exception):
    """The outbox stops while a delivery waits for its next attempt: it stays pending in
    Redis, and a process claims it after the idle time."""


class ReplySender(Protocol):
    """Sends one reply through one channel. Raises DeliveryError when the channel refused it."""

    async def send(self, reply: Reply) -> None: ...


class DeskSender(Protocol):
    """Shows one desk event to the support staff (Slack). Raises DeliveryError on refusal."""

    async def send(self, event: DeskEvent) -> None: ...


Outgoing = Reply | DeskEvent


class Outbox:
    """Delivers stored replies through each channel's :class:`ReplySender`, with retries."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        senders: Mapping[str, ReplySender],
        *,
        desk: DeskSender | None = None,
        consumer: str,
        metrics: Metrics,
        concurrency: int = 200,
        max_attempts: int = 8,
        retry_for_s: float = 900.0,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 60.0,
        claim_idle_s: float = 30.0,
        claim_ttl_s: int = 7 * 24 * 3600,
        poll_interval_s: float = 0.05,
        max_waiters: int = 500,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.senders = dict(senders)
        self.desk = desk
        self.consumer = consumer
        self.metrics = metrics
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.retry_for_s = retry_for_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.claim_idle_s = claim_idle_s
        self.claim_ttl_s = claim_ttl_s
        self.watcher = ReplyWatcher(
            redis, keys, interval_s=poll_interval_s, max_waiters=max_waiters
        )
        # Deliveries in progress, by (outbox stream, entry id): entry ids are per stream.
        self._in_flight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._reader = LaneReader(redis, keys, lambda lane: (lane.outbox,))
        self._conversations = SerialByKey()
        self._waiting = 0  # deliveries in flight that only wait (see _free_slots)
        # Set once the outbox stops: a delivery waiting for its next attempt is left pending at
        # once instead of holding the shutdown up (_LeftPending).
        self._stopping = asyncio.Event()

    # -- synchronous waiters --------------------------------------------------------------

    def notify(self, ticket_id: str) -> None:
        """Wake a waiter in this process at once (others find the reply by polling)."""
        self.watcher.notify(ticket_id)

    def can_wait(self) -> bool:
        """Whether another synchronous waiter is taken now (``PEAKDESK_MAX_WAITERS``)."""
        return self.watcher.can_wait()

    async def wait_for_reply(self, ticket_id: str, timeout: float) -> Reply | None:
        """The reply to ``ticket_id`` if it is ready within ``timeout`` and nobody sent it yet.

        When this returns a reply, the caller owns its delivery: no callback will be sent.
        On a store error, or with ``max_waiters`` waiting already, it returns None and the
        reply goes out asynchronously.
        """
        try:
            raw = await self.watcher.wait(ticket_id, timeout)
            if raw is None:
                return None
            # A burst's reply is stored under each of its tickets: claim the reply.
            reply = Reply.from_json(raw)
            lane = self.keys.for_conversation(reply.conversation_key)
            claimed = await self.redis.set(
                lane.delivery_claim(reply.delivery_id), SYNC, nx=True, ex=self.claim_ttl_s
            )
        except RedisError as exc:
            log.warning("waiting for ticket %s failed (%s)", ticket_id, type(exc).__name__)
            return None
        return reply if claimed else None

    # -- asynchronous delivery ------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver replies until ``stop`` is set, then let in-flight deliveries finish."""
        last_claim = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() - last_claim > self.claim_idle_s / 2:
                    last_claim = time.monotonic()
                    await self._claim_stale()
                free = self._free_slots()
                if free <= 0:
                    await asyncio.wait(
                        list(self._in_flight.values()),
                        timeout=1.0,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    continue
                for stream, entries in await self._reader.read(self.consumer, free, 500):
                    for entry_id, fields in entries:
                        self._start(text_of(stream), text_of(entry_id), fields)
            except Exception as exc:  # Redis, or a bug: the loop must live on, and say so
                log.warning(
                    "outbox read failed (%s); retrying",
                    type(exc).__name__,
                    exc_info=not isinstance(exc, RedisError),
                )
                if "NOGROUP" in str(exc):  # Redis restarted without its data: recreate
                    with contextlib.suppress(RedisError):
                        for lane in self.keys.lanes:
                            await ensure_group(self.redis, lane.outbox)
                await asyncio.sleep(1.0)
        self._stopping.set()
        if self._in_flight:
            _, unfinished = await asyncio.wait(list(self._in_flight.values()), timeout=10.0)
            for task in unfinished:  # stays pending in Redis: claimed again after the idle time
                task.cancel()

    def _start(self, stream: str, entry_id: str, fields: Mapping[str, str]) -> None:
        if (stream, entry_id) in self._in_flight:
            return
        item: Outgoing
        if "r" in fields:
            raw = fields["r"]
            item = Reply.from_json(raw)
        elif "d" in fields:
            raw = fields["d"]
            item = DeskEvent.from_json(raw)
        else:
            return
        # Replies of one conversation go out in order; other conversations concurrently.
        behind = self._conversations.busy(item.serial_key)
        if behind:
            self._waiting += 1
        task = self._conversations.start(
            item.serial_key, lambda: self._deliver(stream, entry_id, raw, item, behind)
        )
        self._in_flight[stream, entry_id] = task
        task.add_done_callback(lambda _: self._in_flight.pop((stream, entry_id), None))

    def _free_slots(self) -> int:
        # A delivery waiting for its retry, or behind its conversation's earlier reply, holds
        # no slot: a channel that is down must not hold back the replies of the others (found
        # by tests/faults: Telegram's 5xx held every slot, and the webhook callbacks waited).
        # The deliveries held in memory stay bounded.
        return min(
            self.concurrency - (len(self._in_flight) - self._waiting),
            self.concurrency * WAITING_FACTOR - len(self._in_flight),
        )

    async def _claim_stale(self) -> None:
        idle_ms = int(self.claim_idle_s * 1000)
        for lane in self.keys.lanes:
            stream = lane.outbox
            _, entries, *_ = await self.redis.xautoclaim(
                stream,
                GROUP,
                self.consumer,
                min_idle_time=idle_ms,
                start_id="0-0",
                count=100,
            )
            for entry_id, fields in entries:
                if fields:
                    self._start(stream, text_of(entry_id), fields)
                else:
                    await self._ack(stream, text_of(entry_id))
            # Keep our own long-running deliveries from being claimed.
            ours: list[Any] = [entry_id for (s, entry_id) in self._in_flight if s == stream]
            if ours:
                await self.redis.xclaim(stream, GROUP, self.consumer, 0, ours, justid=True)

    async def _deliver(
        self, stream: str, entry_id: str, raw: str, reply: Outgoing, behind: bool
    ) -> None:
        if behind:  # its conversation's turn: it holds a slot now
            self._waiting -= 1
        with about(reply.ticket_id, reply.conversation_key):
            await self._deliver_once(stream, entry_id, raw, reply)

    async def _deliver_once(self, stream: str, entry_id: str, raw: str, reply: Outgoing) -> None:
        lane = self.keys.for_conversation(reply.conversation_key)
        try:
            claim_key = lane.delivery_claim(reply.delivery_id)
            # Leave a synchronous waiter its head start, but stop waiting once it took over.
            while (head_start := reply.wait_until - time.time()) > 0:
                if await self.redis.get(claim_key) == SYNC:
                    break
                await asyncio.sleep(min(head_start, 0.2))
            if not await self.redis.set(claim_key, SENDING, nx=True, ex=self.claim_ttl_s):
                owner = await self.redis.get(claim_key)
                if owner == SYNC:  # the synchronous waiter already handed it over
                    self.metrics.deliveries.labels(reply.channel, "sync").inc()
                    await self._ack(stream, entry_id)
                    return
                if owner == SENT:  # sent before, but the ack was lost: do not send again
                    await self._ack(stream, entry_id)
                    return
            failure = await self._send_with_retries(reply)
            if failure is None:
                self.metrics.deliveries.labels(reply.channel, "sent").inc()
                await self._ack(stream, entry_id, sent_claim=claim_key)
                return
            self.metrics.deliveries.labels(reply.channel, "failed").inc()
            field = "d" if isinstance(reply, DeskEvent) else "r"
            # ``why``: the error that made it give up, as the log line names it.
            await self.redis.xadd(
                lane.dead_deliveries,
                {field: raw, "why": str(failure)[:500]},
                maxlen=100_000,
                approximate=True,
            )
            if isinstance(reply, Reply) and reply.source is ReplySource.HUMAN and self.desk:
                await self._tell_desk_undelivered(reply)
            await self._ack(stream, entry_id)
        except _LeftPending:
            return
        except RedisError as exc:
            # Left pending: another pass (or process) claims it after the idle timeout.
            log.warning(
                "delivery of ticket %s interrupted: %s", reply.ticket_id, type(exc).__name__
            )
        except Exception:
            log.exception("delivery of ticket %s failed unexpectedly", reply.ticket_id)

    async def _tell_desk_undelivered(self, reply: Reply) -> None:
        """A person's reply did not reach the customer: the desk must know."""
        event = DeskEvent(
            DeskEvent.new_id(),
            DeskEventKind.UNDELIVERED,
            reply.conversation_key,
            reply.ticket_id,
            text=reply.text,
        )
        lane = self.keys.for_conversation(reply.conversation_key)
        await self.redis.xadd(lane.outbox, {"d": event.to_json()})

    async def _send(self, item: Outgoing) -> None:
        if isinstance(item, DeskEvent):
            if self.desk is None:
                raise DeliveryError("no desk is configured", retryable=False)
            await self.desk.send(item)
            return
        sender = self.senders.get(item.channel)
        if sender is None:
            raise DeliveryError(f"no reply sender for channel {item.channel!r}", retryable=False)
        await sender.send(item)

    async def _send_with_retries(self, reply: Outgoing) -> DeliveryError | None:
        """Send until the channel takes it (None); the last error once it refused it, or
        stayed unavailable for ``max_attempts`` attempts and ``retry_for_s`` after the reply
        was made. Raises _LeftPending when the outbox stops while the reply waits for its
        next attempt.

        The time floor matters more than the attempts: the backoff ladder of the default 8
        attempts spans about a minute, and a channel down longer than that (Telegram's 5xx,
        a gateway restarting) must delay its replies, not drop them.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._send(reply)
                return None
            except DeliveryError as exc:
                waited = time.time() - reply.created_at
                if not exc.retryable or (
                    attempt >= self.max_attempts and waited >= self.retry_for_s
                ):
                    log.warning(
                        "reply for ticket %s not delivered: %s (attempt %d, final)",
                        reply.ticket_id,
                        exc,
                        attempt,
                    )
                    return exc
                self.metrics.deliveries.labels(reply.channel, "retry").inc()
                delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** min(attempt - 1, 30))
                delay = max(delay / 2 + random.uniform(0, delay / 2), exc.retry_after or 0.0)
                log.info(
                    "reply for ticket %s: %s; retry %d in %.1fs",
                    reply.ticket_id,
                    exc,
                    attempt,
                    delay,
                )
                self._waiting += 1
                try:
                    await wait_event(self._stopping, delay)
                finally:
                    self._waiting -= 1
                if self._stopping.is_set():
                    raise _LeftPending from exc

    async def _ack(self, stream: str, entry_id: str, *, sent_claim: str | None = None) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            if sent_claim is not None:
                pipe.set(sent_claim, SENT, xx=True, keepttl=True)
            pipe.xack(stream, GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            await pipe.execute()
