"""One turn per burst, one worker per conversation across processes (fakeredis and Redis)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from redis.asyncio import Redis

from core.handler import ReplyHandler
from core.handover import HandoverDesk
from core.keys import Keys
from core.llm import HolySheepClient
from core.metrics import Metrics
from core.models import InboundMessage, Reply, ReplySource
from core.queue import PriorityQueue
from core.state import ConversationState
from core.worker import Worker
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import answer_all, inbound, make_worker, outbox, run_workers


def said(n: int, text: str, conversation: str = "c1") -> InboundMessage:
    return dataclasses.replace(inbound(n, text), conversation_id=conversation, user_id=conversation)


async def test_messages_sent_within_the_window_get_one_answer_in_order(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    queue = PriorityQueue(redis, keys, merge_bursts=True)
    await queue.ensure_groups()
    tickets = [
        (await queue.admit(said(n, text), 2)).ticket_id
        for n, text in enumerate(["hi", "my parcel is late", "what can I do?"])
    ]
    await queue.admit(said(9, "unrelated", conversation="c2"), 2)
    await answer_all(queue, redis, keys, fake_llm, 2, burst_window_s=0.5)
    assert fake_llm.calls == 2
    asked = [r.json["messages"][-1]["content"] for r in fake_llm.requests]
    assert "hi\nmy parcel is late\nwhat can I do?" in asked
    [reply] = [r for r in await outbox(redis, keys) if r.conversation_id == "c1"]
    assert reply.message_ids == ["m0", "m1", "m2"]
    assert reply.message_id == "m2" and reply.ticket_id == tickets[-1]
    for ticket in tickets:  # every message has its (one, shared) reply: none is answered again
        stored = await queue.stored_reply(ticket)
        assert stored is not None and stored.reply_id == reply.reply_id
    assert not await redis.exists(keys.burst(said(0, "").conversation_key))


async def test_messages_arriving_while_a_turn_is_answered_are_answered_together_next(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    first_call = asyncio.Event()
    release = asyncio.Event()

    async def slow_first(payload: dict[str, Any]) -> str:
        text = payload["messages"][-1]["content"]
        if text == "first":
            first_call.set()
            await release.wait()
        return f"re: {text}"

    fake_llm.responder = slow_first
    queue = PriorityQueue(redis, keys, merge_bursts=True)
    await queue.ensure_groups()
    llm = HolySheepClient(api_key="sk-test", base_url=fake_llm.base_url)
    worker = make_worker(queue, redis, keys, llm, burst_window_s=0.01)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await queue.admit(said(1, "first"), 2)
        await asyncio.wait_for(first_call.wait(), 10)
        await queue.admit(said(2, "second"), 2)
        await queue.admit(said(3, "third"), 0)  # even a more urgent one waits its turn
        await asyncio.sleep(0.3)
        assert fake_llm.calls == 1  # nothing overtakes the turn in flight
        release.set()
        async with asyncio.timeout(10):
            while len(await outbox(redis, keys)) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            while sum((await queue.depths()).values()):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await running
        await llm.aclose()
    replies = await outbox(redis, keys)
    assert [r.text for r in replies] == ["re: first", "re: second\nthird"]
    assert [r.answered_ids for r in replies] == [["m1"], ["m2", "m3"]]
    assert fake_llm.calls == 2


async def test_two_worker_processes_never_answer_one_conversation_at_the_same_time(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    # Two workers with their own consumers stand for two processes: only Redis is shared.
    busy: set[str] = set()
    overlaps = 0

    async def answer(payload: dict[str, Any]) -> str:
        nonlocal overlaps
        text = str(payload["messages"][-1]["content"])
        conversation = text.split()[0]
        if conversation in busy:
            overlaps += 1
        busy.add(conversation)
        await asyncio.sleep(0.02)
        busy.discard(conversation)
        return text

    fake_llm.responder = answer
    queue = PriorityQueue(redis, keys)  # burst merge off: one answer per message
    await queue.ensure_groups()
    for n in range(24):
        conversation = f"c{n % 3}"
        await queue.admit(said(n, f"{conversation} message {n}", conversation), n % 3)
    llm = HolySheepClient(api_key="sk-test", base_url=fake_llm.base_url)
    workers = [make_worker(queue, redis, keys, llm, max_concurrent=8) for _ in range(2)]

    async def answered() -> bool:
        return len(await outbox(redis, keys)) == 24

    try:
        await run_workers(workers, answered)
    finally:
        await llm.aclose()
    assert overlaps == 0
    assert fake_llm.calls == 24
    assert {r.message_id for r in await outbox(redis, keys)} == {f"m{n}" for n in range(24)}


async def test_a_crashed_workers_turn_lock_lapses_and_the_message_is_answered(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    queue = PriorityQueue(redis, keys, merge_bursts=True)
    await queue.ensure_groups()
    await queue.admit(said(1, "hello"), 2)
    [entry] = await queue.read("dead-worker", 1)
    assert await queue.begin_turn(entry, "dead-worker:token", lock_ttl_ms=300) is not None
    # ...and that process died holding the conversation and the entry.
    llm = HolySheepClient(api_key="sk-test", base_url=fake_llm.base_url)
    worker = make_worker(queue, redis, keys, llm, claim_idle_s=0.3)

    async def answered() -> bool:
        return len(await outbox(redis, keys)) == 1

    try:
        await run_workers([worker], answered)
    finally:
        await llm.aclose()
    [reply] = await outbox(redis, keys)
    assert reply.message_id == "m1" and fake_llm.calls == 1


async def test_a_flood_from_one_customer_answers_every_message_exactly_once(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    # More unanswered messages than one turn takes, and the newest one urgent (read first).
    queue = PriorityQueue(redis, keys, merge_bursts=True)
    await queue.ensure_groups()
    for n in range(24):
        await queue.admit(said(n, f"line {n}"), 2)
    await queue.admit(said(24, "my payment failed"), 0)
    sent = await answer_all(queue, redis, keys, fake_llm, burst_window_s=0.01)
    covered = [i for reply in sent for i in reply.answered_ids]
    assert sorted(covered) == sorted(f"m{n}" for n in range(25))  # each once, none lost
    assert not await redis.exists(keys.burst(said(0, "").conversation_key))


async def test_a_worker_whose_turn_lapsed_stores_nothing_and_the_new_owner_answers_once(
    redis: Redis, keys: Keys
) -> None:
    queue = PriorityQueue(redis, keys, merge_bursts=True)
    await queue.ensure_groups()
    await queue.admit(said(1, "first"), 2)
    await queue.admit(said(2, "second"), 2)
    first, second = await queue.read("c", 2)
    stalled = await queue.begin_turn(first, "stalled", lock_ttl_ms=50)
    assert stalled is not None and len(stalled.items) == 2
    await asyncio.sleep(0.1)  # its process stalls; the lock lapses
    await queue.admit(said(3, "third"), 2)
    owner = await queue.begin_turn(second, "owner", lock_ttl_ms=5000)
    assert owner is not None and len(owner.items) == 3

    def reply(turn: Any, entry: Any, text: str) -> Reply:
        answering = turn.merged(entry)
        return Reply.for_message(
            answering.message,
            ticket_id=answering.ticket_id,
            priority=2,
            text=text,
            source=ReplySource.LLM,
            message_ids=answering.message_ids,
        )

    assert await queue.finish(first, reply(stalled, first, "late"), turn=stalled) == -1
    assert await queue.finish(second, reply(owner, second, "answer"), turn=owner) == 1
    [sent] = await outbox(redis, keys)
    assert sent.text == "answer" and sent.answered_ids == ["m1", "m2", "m3"]
    assert await queue.begin_turn(first, "retry", lock_ttl_ms=5000) is None  # answered


async def test_in_a_group_chat_each_member_gets_an_answer_of_their_own(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    queue = PriorityQueue(redis, keys, merge_bursts=True)
    await queue.ensure_groups()
    for n, user in enumerate(["alice", "bob", "alice"]):
        message = dataclasses.replace(said(n, f"{user} asks {n}", "group"), user_id=user)
        await queue.admit(message, 2)
    sent = await answer_all(queue, redis, keys, fake_llm, 2, burst_window_s=0.2)
    replies = {r.user_id: r for r in sent}
    assert replies["alice"].answered_ids == ["m0", "m2"]
    assert replies["bob"].answered_ids == ["m1"]
    assert "bob" not in replies["alice"].text and "alice" not in replies["bob"].text


async def test_turns_are_renewed_on_a_redis_that_lost_its_scripts(redis: Redis, keys: Keys) -> None:
    queue = PriorityQueue(redis, keys, merge_bursts=True)
    await queue.ensure_groups()
    await queue.admit(said(1, "hello"), 2)
    [entry] = await queue.read("c", 1)
    assert await queue.begin_turn(entry, "ours", lock_ttl_ms=300) is not None
    await redis.script_flush()  # a Redis restarted without persistence, a promoted replica
    conversation = entry.message.conversation_key
    missed = await queue.renew_turns([(conversation, "ours"), (conversation, "lapsed")], 5000)
    assert missed == ["lapsed"]
    assert await redis.pttl(keys.turn_lock(conversation)) > 1000


LIMIT = 3


@pytest.mark.parametrize("answered", ["merged", "alone", "dead_lettered", "crashed", "held"])
async def test_the_conversation_limit_counts_what_is_unanswered_however_it_was_answered(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, answered: str
) -> None:
    # merged: one customer's burst in one turn; alone: burst merge off (the list is kept for
    # the limit only); dead_lettered; crashed: taken over from a dead worker; held: passed
    # to the people who have the conversation.
    queue = PriorityQueue(redis, keys, merge_bursts=answered != "alone", conversation_limit=LIMIT)
    await queue.ensure_groups()

    def member_said(n: int, member: str) -> InboundMessage:
        return dataclasses.replace(
            said(n, f"{member} asks {n}", "group"), user_id=member, group=True
        )

    members = ["ann"] * LIMIT if answered == "merged" else [f"member{n}" for n in range(LIMIT)]
    for n, member in enumerate(members):
        assert (await queue.admit(member_said(n, member), 2)).status == "queued"
    over = await queue.admit(member_said(LIMIT, "zoe"), 2)
    assert (over.status, over.notice, over.reason) == ("throttled", True, "conversation")
    quiet = await queue.admit(member_said(LIMIT + 1, "zoe"), 2)
    assert (quiet.status, quiet.notice) == ("throttled", False)  # one notice a window

    llm = HolySheepClient(api_key="sk-test", base_url=fake_llm.base_url)
    desk = HandoverDesk(redis, keys, staffed=answered == "held")
    if answered == "held":
        escalation = member_said(99, "ann")
        await desk.escalate(escalation, ticket_id="T-escalated", priority=1, reason="test")
    if answered == "crashed":
        assert len(await queue.read("crashed-worker", LIMIT)) == LIMIT
    handler = ReplyHandler(llm, ConversationState(redis, keys), Metrics(), desk=desk)
    worker = Worker(
        queue,
        handler,
        Metrics(),
        block_ms=50,
        burst_window_s=0.05,
        claim_idle_s=0.3,
        max_deliveries=0 if answered == "dead_lettered" else 5,
    )

    async def all_done() -> bool:
        return sum((await queue.depths()).values()) == 0

    try:
        await run_workers([worker], all_done)
    finally:
        await llm.aclose()
    conversation = member_said(0, "ann").conversation_key
    assert await redis.llen(keys.burst(conversation)) == 0
    again = await queue.admit(member_said(LIMIT + 2, "zoe"), 2)
    assert again.status == "queued"
