"""Worker behaviour on fakeredis and the real Redis: concurrency bound, dead letters, takeover."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from core.handler import ReplyHandler
from core.keys import Keys
from core.llm import HolySheepClient
from core.metrics import Metrics
from core.models import InboundMessage, QueuedMessage, Reply, ReplySource
from core.queue import PriorityQueue
from core.state import ConversationState
from core.worker import Worker
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import answer_all, inbound, run_workers


class Concurrency:
    """Makes the fake LLM answer after ``delay`` and records how many calls overlapped."""

    def __init__(self, fake_llm: FakeOpenAI, delay: float) -> None:
        self.in_flight = self.peak = 0
        self.delay = delay
        fake_llm.responder = self.answer

    async def answer(self, payload: dict[str, Any]) -> str:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        return "ok"


async def test_at_most_max_concurrent_llm_calls_are_in_flight(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    calls = Concurrency(fake_llm, 0.05)
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    for n in range(30):
        await queue.admit(inbound(n), 2)
    await answer_all(queue, redis, keys, fake_llm, 30, max_concurrent=4)
    assert fake_llm.calls == 30
    assert calls.peak == 4


class CrashingHandler:
    """A handler with a bug that fails every message: the poison-message case."""

    def __init__(self) -> None:
        self.attempts = 0

    async def answer(self, entry: QueuedMessage) -> Reply:
        self.attempts += 1
        raise RuntimeError("bug")

    async def remember(self, entry: QueuedMessage, reply: Reply) -> None:
        raise AssertionError("never called for a failed message")

    async def fallback(self, entry: QueuedMessage, code: str) -> Reply:
        return Reply.for_message(
            entry.message,
            ticket_id=entry.ticket_id,
            priority=entry.priority,
            text=f"sorry {entry.ticket_id} {code}",
            source=ReplySource.FALLBACK,
            error_code=code,
        )


async def test_a_message_that_keeps_failing_is_dead_lettered_with_one_apology(
    redis: Redis, keys: Keys
) -> None:
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    admission = await queue.admit(inbound(1), 0)
    handler = CrashingHandler()
    metrics = Metrics()
    worker = Worker(queue, handler, metrics, claim_idle_s=0.2, max_deliveries=3, block_ms=50)

    async def dead_lettered() -> bool:
        return int(await redis.xlen(keys.dead_letters)) == 1

    await run_workers([worker], dead_lettered)
    assert handler.attempts == 3
    reply = await queue.stored_reply(admission.ticket_id)
    assert reply is not None and reply.text == f"sorry {admission.ticket_id} dead_letter"
    assert int(await redis.xlen(keys.outbox)) == 1
    assert await queue.depths() == {0: 0, 1: 0, 2: 0}
    assert metrics.dead_letters._value.get() == 1


async def test_a_stopped_workers_pending_message_is_taken_over_by_another(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    admission = await queue.admit(inbound(1), 1)
    [_] = await queue.read("vanished-worker", 1)  # taken, then its process died
    llm = HolySheepClient(api_key="sk-test", base_url=fake_llm.base_url)
    handler = ReplyHandler(llm, ConversationState(redis, keys), Metrics())
    worker = Worker(queue, handler, Metrics(), claim_idle_s=0.3, block_ms=50)

    async def answered() -> bool:
        return await queue.stored_reply(admission.ticket_id) is not None

    try:
        await run_workers([worker], answered)
    finally:
        await llm.aclose()
    reply = await queue.stored_reply(admission.ticket_id)
    assert reply is not None and reply.text == "Echo: question 1"
    assert fake_llm.calls == 1


async def test_messages_with_the_same_entry_id_in_two_streams_are_both_processed(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    fake_llm.latency = 0.3  # the first is still in flight when its twin is read
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    for priority in (0, 1, 2):  # the same explicit id in each priority stream
        await redis.xadd(
            keys.stream(priority),
            {
                "t": f"T{priority}",
                "m": inbound(priority).to_json(),
                "e": "0",
                "w": "0",
            },
            id="1000-0",
        )
    llm = HolySheepClient(api_key="sk-test", base_url=fake_llm.base_url)
    handler = ReplyHandler(llm, ConversationState(redis, keys), Metrics())
    worker = Worker(queue, handler, Metrics(), claim_idle_s=60, block_ms=50)

    async def all_answered() -> bool:
        return int(await redis.xlen(keys.outbox)) == 3

    try:
        await run_workers([worker], all_answered, timeout=5)
    finally:
        await llm.aclose()
    assert fake_llm.calls == 3


class RecordingPresence:
    def __init__(self) -> None:
        self.shown: list[tuple[float, str]] = []

    async def typing(self, message: InboundMessage) -> None:
        self.shown.append((asyncio.get_running_loop().time(), message.message_id))


async def test_presence_is_shown_again_and_again_while_the_answer_is_prepared(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    fake_llm.latency = 0.55
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    await queue.admit(inbound(1), 2)
    presence = RecordingPresence()
    llm = HolySheepClient(api_key="sk-test", base_url=fake_llm.base_url)
    handler = ReplyHandler(llm, ConversationState(redis, keys), Metrics())
    worker = Worker(
        queue,
        handler,
        Metrics(),
        presence={"webhook": presence},
        typing_interval_s=0.2,
        block_ms=50,
    )

    async def answered() -> bool:
        return int(await redis.xlen(keys.outbox)) == 1

    try:
        await run_workers([worker], answered)
    finally:
        await llm.aclose()
    assert 3 <= len(presence.shown) <= 4  # at 0, 0.2, 0.4 s (and maybe 0.6): then it stops
    await asyncio.sleep(0.3)
    assert len(presence.shown) <= 4


async def test_replies_of_one_conversation_keep_the_order_of_its_messages(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    async def slow_first(payload: dict[str, Any]) -> str:
        text = payload["messages"][-1]["content"]
        await asyncio.sleep(0.4 if text == "first" else 0.0)
        return f"re: {text}"

    fake_llm.responder = slow_first
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    for n, text in enumerate(["first", "second"]):
        message = inbound(n, text)
        message.conversation_id, message.group = "same-chat", True
        await queue.admit(message, 2)
    other = inbound(7, "other chat")
    await queue.admit(other, 2)
    llm = HolySheepClient(api_key="sk-test", base_url=fake_llm.base_url)
    handler = ReplyHandler(llm, ConversationState(redis, keys), Metrics())
    worker = Worker(queue, handler, Metrics(), block_ms=50)

    async def all_answered() -> bool:
        return int(await redis.xlen(keys.outbox)) == 3

    try:
        await run_workers([worker], all_answered)
    finally:
        await llm.aclose()
    outbox = await redis.xrange(keys.outbox)
    texts = [Reply.from_json(fields["r"]).text for _, fields in outbox]  # type: ignore[index,union-attr]
    assert texts.index("re: first") < texts.index("re: second")
    assert texts[0] == "re: other chat"  # another conversation did not wait for the slow one


async def test_a_burst_from_one_customer_does_not_hold_up_the_others(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    fake_llm.latency = 0.2
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    for n in range(6):  # one chatty customer first...
        burst = inbound(n, f"burst {n}")
        burst.conversation_id = burst.user_id = "chatty"
        await queue.admit(burst, 2)
    await queue.admit(inbound(99, "someone else"), 2)  # ...then another customer
    llm = HolySheepClient(api_key="sk-test", base_url=fake_llm.base_url)
    handler = ReplyHandler(llm, ConversationState(redis, keys), Metrics())
    worker = Worker(queue, handler, Metrics(), max_concurrent=2, block_ms=50)

    async def other_answered() -> bool:
        return await redis.xlen(keys.outbox) >= 1 and any(
            Reply.from_json(f["r"]).message_id == "m99"  # type: ignore[index]
            for _, f in await redis.xrange(keys.outbox)  # type: ignore[union-attr]
        )

    try:
        await run_workers([worker], other_answered, timeout=5)
    finally:
        await llm.aclose()
    answered = [Reply.from_json(f["r"]).message_id for _, f in await redis.xrange(keys.outbox)]  # type: ignore[index,union-attr]
    assert answered.index("m99") <= 2  # not after the whole burst of six


async def test_a_message_waiting_for_anothers_shared_answer_lends_its_slot(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    calls = Concurrency(fake_llm, 0.3)
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    await queue.admit(inbound(1, "do you ship to Canada?"), 2)  # answered once for both
    await queue.admit(inbound(2, "do you ship to Canada?"), 2)
    await queue.admit(inbound(3, "something else entirely"), 2)
    await answer_all(queue, redis, keys, fake_llm, 3, max_concurrent=2)
    # Two slots: the second asker of the shared question waits without holding one, so the
    # third message's call runs beside the first one instead of after it.
    assert fake_llm.calls == 2 and calls.peak == 2


async def test_a_dead_workers_message_goes_before_the_backlog(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    # Found by tests/faults: under a backlog every freed slot went to the next read, so the
    # messages of a killed worker waited until the backlog was gone.
    fake_llm.latency = 0.3
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    await queue.admit(inbound(0), 2)
    [_] = await queue.read("killed-worker", 1)
    await asyncio.sleep(0.35)  # idle past the claim time when the worker looks
    for n in range(1, 6):
        await queue.admit(inbound(n), 2)
    llm = HolySheepClient(api_key="sk-test", base_url=fake_llm.base_url)
    handler = ReplyHandler(llm, ConversationState(redis, keys), Metrics())
    worker = Worker(queue, handler, Metrics(), max_concurrent=1, claim_idle_s=0.3, block_ms=50)

    async def all_answered() -> bool:
        return int(await redis.xlen(keys.outbox)) == 6

    try:
        await run_workers([worker], all_answered, timeout=10)
    finally:
        await llm.aclose()
    asked = [r.json["messages"][-1]["content"] for r in fake_llm.requests]
    assert asked.index("question 0") <= 1  # taken over at the first slot after the claim time


async def test_a_message_waiting_for_another_processes_turn_lends_its_slot(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    busy = inbound(1, "my conversation is being answered elsewhere")
    # Another process answers this conversation for the next 1.5 s.
    await redis.set(keys.turn_lock(busy.conversation_key), "other-process", px=1500)
    await queue.admit(busy, 2)
    await queue.admit(inbound(2, "someone else"), 2)
    llm = HolySheepClient(api_key="sk-test", base_url=fake_llm.base_url)
    handler = ReplyHandler(llm, ConversationState(redis, keys), Metrics())
    worker = Worker(queue, handler, Metrics(), max_concurrent=1, block_ms=50)
    started = time.monotonic()
    answered: dict[str, float] = {}

    async def both_answered() -> bool:
        for reply in await outbox_replies(redis, keys):
            answered.setdefault(reply.message_id, time.monotonic() - started)
        return len(answered) == 2

    try:
        await run_workers([worker], both_answered)
    finally:
        await llm.aclose()
    # One slot: the waiting message did not hold it, so the other one did not wait too.
    assert answered["m2"] < 1.0 < answered["m1"]


async def outbox_replies(redis: Redis, keys: Keys) -> list[Reply]:
    return [Reply.from_json(f["r"]) for _, f in await redis.xrange(keys.outbox)]  # type: ignore[index,union-attr]
