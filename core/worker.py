"""The worker: takes messages from the priority queue and answers each exactly once.

At most ``max_concurrent`` messages are processed at a time (each may hold one LLM call), and
only as many entries are read as there are free slots, so the most urgent queued message is
always the next one started. A message that only waits (behind an earlier one of its
conversation, for the rest of its burst, for another process's turn in its conversation, for
another's shared answer) holds no slot: a crowded conversation answers one turn at a time
while everybody else goes on. What a conversation has waiting is bounded by the queue's
conversation limit, the conversations held at once by ``WAITING_FACTOR``.

Entries of crashed workers are claimed after ``claim_idle_s``; entries delivered more than
``max_deliveries`` times go to the dead letters with an apology.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Protocol

from redis.exceptions import RedisError

from core.aio import SerialByKey, set_slot_owner, wait_event
from core.errors import StoreUnavailable
from core.logcontext import about, redact
from core.metrics import Metrics
from core.models import InboundMessage, QueuedMessage, Reply
from core.queue import PriorityQueue, Turn

log = logging.getLogger("peakdesk.worker")

# How many conversations a worker may hold messages of, per LLM slot (each holds at most the
# queue's conversation limit).
WAITING_FACTOR = 4


class Answerer(Protocol):
    async def answer(self, entry: QueuedMessage) -> Reply | None:
        """The reply; None when the message was passed to people instead (and acked)."""

    async def remember(self, entry: QueuedMessage, reply: Reply) -> None: ...

    async def fallback(self, entry: QueuedMessage, code: str) -> Reply: ...


class WaitRecorder(Protocol):
    """Where the queue waits go for the shared dashboard (core.ledger.Ledger)."""

    def record_waits(self, waits: Mapping[int, Sequence[float]]) -> None: ...


class Presence(Protocol):
    """Shows the customer that an answer is being prepared ("typing..."), per channel."""

    async def typing(self, message: InboundMessage) -> None: ...


class ReplyNotifier(Protocol):
    def notify(self, ticket_id: str) -> None: ...


def consumer_name(role: str = "worker") -> str:
    """A consumer name unique per process and loop: host, pid and a random suffix."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """One consumer of the priority queue (see the module docstring)."""

    def __init__(
        self,
        queue: PriorityQueue,
        handler: Answerer,
        metrics: Metrics,
        *,
        notifier: ReplyNotifier | None = None,
        presence: Mapping[str, Presence] | None = None,
        waits: WaitRecorder | None = None,
        typing_interval_s: float = 4.0,
        consumer: str | None = None,
        max_concurrent: int = 50,
        claim_idle_s: float = 30.0,
        max_deliveries: int = 5,
        block_ms: int = 1000,
        shutdown_grace_s: float = 20.0,
        burst_window_s: float = 0.0,
        log_text: bool = False,
    ) -> None:
        self.queue = queue
        self.log_text = log_text
        self.handler = handler
        self.metrics = metrics
        self.notifier = notifier
        self.presence = dict(presence or {})
        self.waits = waits
        self.typing_interval_s = typing_interval_s
        self._conversations = SerialByKey()
        self.consumer = consumer or consumer_name()
        self.max_concurrent = max_concurrent
        self.claim_idle_s = claim_idle_s
        self.max_deliveries = max_deliveries
        self.block_ms = block_ms
        self.shutdown_grace_s = shutdown_grace_s
        self.burst_window_s = burst_window_s
        # A conversation's turn lock outlives a crashed worker by the claim timeout, so the
        # worker claiming its entry finds the conversation free again.
        self.lock_ttl_ms = int(claim_idle_s * 1000)
        self._turns: dict[str, str] = {}  # turn lock token -> conversation, while answering
        # By (stream, entry id): each stream (a priority of a lane) numbers its entries on its
        # own, so the same id can stand in two streams at once.
        self._in_flight: dict[tuple[str, str], tuple[QueuedMessage, asyncio.Task[None]]] = {}
        self._slot_freed = asyncio.Event()
        self._waiting = 0  # entries that only wait and hold no slot meanwhile (see _lend_slot)
        self._claim_due = False  # time to look for dead workers' entries (set by _maintain)

    async def run(self, stop: asyncio.Event) -> None:
        """Process messages until ``stop`` is set; then finish what is in flight.

        What does not finish within the grace period stays pending in Redis and is claimed by
        another worker after the idle timeout: nothing is lost.
        """
        maintenance = asyncio.get_running_loop().create_task(self._maintain(stop))
        try:
            await self._read_loop(stop)
        finally:
            maintenance.cancel()
            tasks = [task for _, task in self._in_flight.values()]
            if tasks:
                log.info("stopping: waiting for %d messages in flight", len(tasks))
                _, pending = await asyncio.wait(tasks, timeout=self.shutdown_grace_s)
                for task in pending:
                    task.cancel()

    async def _read_loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            free = self._free_slots()
            if free <= 0:
                self._slot_freed.clear()
                await wait_event(self._slot_freed, 1.0)
                continue
            try:
                entries = await self._next_entries(free)
                failures = 0
            except Exception as exc:  # Redis, or a bug: the loop must live on, and say so
                failures += 1
                log.warning(
                    "queue read failed (%s); retrying",
                    type(exc).__name__,
                    exc_info=not isinstance(exc, RedisError),
                )
                if "NOGROUP" in str(exc):  # Redis restarted without its data: recreate
                    with contextlib.suppress(StoreUnavailable):
                        await self.queue.ensure_groups()
                await wait_event(stop, min(5.0, 0.2 * 2**failures))
                continue
            for entry in entries:
                self._start(entry)
            if entries and self.waits is not None:
                self._record_waits(entries)

    async def _next_entries(self, free: int) -> list[QueuedMessage]:
        """Dead workers' entries first when it is time to look for them, then new ones.

        A dead worker's entries are older than anything new. Under a backlog a free slot is
        taken by the next read at once, so claiming them only when a maintenance pass found a
        slot free left them pending until the backlog was gone: minutes at a peak, a
        priority-0 message behind every new priority-2 one (found by tests/faults).
        """
        if self._claim_due:
            stale = await self.queue.claim_stale(
                self.consumer, int(self.claim_idle_s * 1000), count=free
            )
            for entry in stale:
                log.info("ticket %s: taken over (delivery %d)", entry.ticket_id, entry.deliveries)
            if stale:
                return stale
            self._claim_due = False
        return await self.queue.read(self.consumer, free, self.block_ms)

    def _record_waits(self, entries: Sequence[QueuedMessage]) -> None:
        assert self.waits is not None
        now = time.time()
        waits: dict[int, list[float]] = {}
        for entry in entries:
            waits.setdefault(entry.priority, []).append(max(0.0, now - entry.enqueued_at))
        self.waits.record_waits(waits)

    async def _maintain(self, stop: asyncio.Event) -> None:
        """Heartbeat our own entries and have the read loop look for those of dead workers,
        every few seconds."""
        interval = max(0.05, self.claim_idle_s / 3)
        while not stop.is_set():
            await wait_event(stop, interval)
            self._claim_due = True
            try:
                if self._in_flight:
                    await self.queue.heartbeat(
                        self.consumer, [e for e, _ in self._in_flight.values()]
                    )
                if self._turns:
                    turns = [(c, t) for t, c in self._turns.items()]
                    missed = await self.queue.renew_turns(turns, self.lock_ttl_ms)
                    # Turns that ended meanwhile are gone from _turns; the rest lapsed.
                    if lapsed := sum(token in self._turns for token in missed):
                        log.warning("%d conversation turns lapsed (slow Redis or a stall)", lapsed)
            except Exception as exc:  # Redis, or a bug: heartbeats must go on
                log.warning(
                    "queue maintenance failed (%s)",
                    type(exc).__name__,
                    exc_info=not isinstance(exc, RedisError),
                )

    def _start(self, entry: QueuedMessage) -> None:
        key = (self.queue.stream_of(entry), entry.entry_id)
        if key in self._in_flight:
            return
        # Messages of one conversation are answered in the order they were read, so their
        # replies cannot overtake each other; other conversations go on concurrently. A new
        # message waits for the rest of its burst (the window after it arrived) first. While
        # waiting it holds no slot.
        conversation = entry.message.conversation_key
        now = time.time()
        # Capped at the window: another host's clock may run ahead of ours.
        due = min(entry.enqueued_at, now) + self.burst_window_s if self.burst_window_s else 0.0
        waits = self._conversations.busy(conversation) or due > now
        if waits:
            self._lend_slot(1)
        task = self._conversations.start(conversation, lambda: self._when_due(entry, due, waits))
        self._in_flight[key] = (entry, task)
        self.metrics.in_flight.inc()

        def done(_: asyncio.Task[None]) -> None:
            self._in_flight.pop(key, None)
            self.metrics.in_flight.dec()
            self._slot_freed.set()

        task.add_done_callback(done)

    async def _when_due(self, entry: QueuedMessage, due: float, waits: bool) -> None:
        set_slot_owner(self._lend_slot)  # this task's own context: the handler may lend it
        if waits:
            try:
                if (delay := due - time.time()) > 0:
                    await asyncio.sleep(delay)
            finally:
                self._lend_slot(-1)  # the budget is recomputed: this entry now holds a slot
        await self.process(entry)

    def _lend_slot(self, change: int) -> None:
        """A message waits (+1: behind its conversation, for its burst, for another
        process's turn, on another's answer) or goes on (-1): its slot is free meanwhile."""
        self._waiting += change
        self._slot_freed.set()

    def _free_slots(self) -> int:
        # Entries only waiting hold no LLM slot, so a crowded conversation does not stall
        # everybody else; a read adds at most as many conversations as entries, which keeps
        # the conversations held in memory bounded (and each holds at most the queue's
        # conversation limit: their unanswered messages).
        return min(
            self.max_concurrent - (len(self._in_flight) - self._waiting),
            self.max_concurrent * WAITING_FACTOR - len(self._conversations),
        )

    async def process(self, entry: QueuedMessage) -> None:
        """Answer one entry (with the other unanswered messages of its conversation) and hand
        the reply over; on any error leave it pending for a retry.

        The conversation's turn lock makes one worker of all processes answer it at a time, so
        replies never overtake each other; an entry answered with an earlier message of its
        burst is acked without a reply of its own.
        """
        with about(entry.ticket_id, entry.message.conversation_key):
            await self._process(entry)

    async def _process(self, entry: QueuedMessage) -> None:
        priority = str(entry.priority)
        token = f"{self.consumer}:{entry.ticket_id}"
        turn: Turn | None = None
        try:
            if entry.deliveries > self.max_deliveries:  # alone: it may be what keeps failing
                await self._dead_letter(entry)
                return
            turn = await self.queue.begin_turn(entry, token, self.lock_ttl_ms)
            if turn is None:
                await self.queue.ack(entry)
                self.metrics.processed.labels(priority, "merged").inc()
                return
            self._turns[token] = entry.message.conversation_key
            answering = turn.merged(entry)
            if self.log_text:
                log.info("answering: %s", redact(answering.message.text))
            self.metrics.wait.labels(priority).observe(max(0.0, time.time() - entry.enqueued_at))
            reply = await self._answer_showing_presence(answering)
            self._turns.pop(token, None)  # ending now: no renewal races the end
            if reply is None:  # passed to the people who have the conversation
                held, turn = turn, None
                await self.queue.end_turn(entry, held, held=True)
                self.metrics.processed.labels(priority, "held").inc()
                return
            finishing, turn = turn, None
            stored = await self.queue.finish(entry, reply, turn=finishing)
            if stored < 0:
                log.warning(
                    "ticket %s: turn lost to another worker; left for a retry", entry.ticket_id
                )
            elif stored:
                await self.handler.remember(answering, reply)
                self.metrics.processed.labels(priority, reply.source.value).inc()
                self._notify(finishing)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "ticket %s: processing failed (%s); left for a retry",
                entry.ticket_id,
                type(exc).__name__,
                exc_info=not isinstance(exc, RedisError),
            )
        finally:
            self._turns.pop(token, None)
            if turn is not None:  # not finished: give the conversation back for the retry
                with contextlib.suppress(RedisError):
                    await self.queue.end_turn(entry, turn)

    def _notify(self, turn: Turn) -> None:
        if self.notifier is not None:
            for item in turn.items:
                self.notifier.notify(item.ticket_id)

    async def _answer_showing_presence(self, entry: QueuedMessage) -> Reply | None:
        presence = self.presence.get(entry.message.channel)
        if presence is None:
            return await self.handler.answer(entry)
        showing = asyncio.get_running_loop().create_task(self._keep_typing(presence, entry))
        try:
            return await self.handler.answer(entry)
        finally:
            showing.cancel()

    async def _keep_typing(self, presence: Presence, entry: QueuedMessage) -> None:
        while True:
            try:
                await presence.typing(entry.message)
            except Exception as exc:  # cosmetic: never let it disturb the answer
                log.debug(
                    "ticket %s: typing indicator failed (%s)", entry.ticket_id, type(exc).__name__
                )
            await asyncio.sleep(self.typing_interval_s)

    async def _dead_letter(self, entry: QueuedMessage) -> None:
        log.error("ticket %s: delivered %d times, dead-lettered", entry.ticket_id, entry.deliveries)
        reply = await self.handler.fallback(entry, "dead_letter")
        await self.queue.finish(entry, reply, dead_reason=f"deliveries={entry.deliveries}")
        self.metrics.dead_letters.inc()
        if self.notifier is not None:
            self.notifier.notify(entry.ticket_id)
