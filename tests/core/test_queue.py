"""PriorityQueue contract, on fakeredis and on the real Redis server."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from core.errors import AdmissionRefused, StoreUnavailable
from core.keys import Keys
from core.models import InboundMessage, Reply, ReplySource
from core.queue import PriorityQueue, new_ticket_id
from tests.harness import inbound


async def make_queue(redis: Redis, keys: Keys, **kw: Any) -> PriorityQueue:
    queue = PriorityQueue(redis, keys, **kw)
    await queue.ensure_groups()
    return queue


async def test_admit_stores_once_and_dedupes_concurrent_copies(redis: Redis, keys: Keys) -> None:
    queue = await make_queue(redis, keys)
    results = await asyncio.gather(*(queue.admit(inbound(1), 2) for _ in range(5)))
    queued = [r for r in results if r.status == "queued"]
    assert len(queued) == 1
    assert {r.ticket_id for r in results} == {queued[0].ticket_id}
    assert await queue.depths() == {0: 0, 1: 0, 2: 1}


async def test_group_commit_admits_a_burst_in_order(redis: Redis, keys: Keys) -> None:
    queue = await make_queue(redis, keys)
    results = await asyncio.gather(*(queue.admit(inbound(n), n % 3) for n in range(300)))
    assert all(r.status == "queued" for r in results)
    assert await queue.depths() == {0: 100, 1: 100, 2: 100}


async def test_admission_limit_refuses_priority_2_first_then_all_at_the_ceiling(
    redis: Redis, keys: Keys
) -> None:
    queue = await make_queue(redis, keys, max_queue=10)  # hard ceiling 11
    for n in range(10):
        await queue.admit(inbound(n), 2)
    with pytest.raises(AdmissionRefused) as refused:
        await queue.admit(inbound(100), 2)
    assert refused.value.depth == 10 and refused.value.retry_after > 0
    assert (await queue.admit(inbound(101), 0)).status == "queued"
    with pytest.raises(AdmissionRefused):
        await queue.admit(inbound(102), 1)
    # A refused message was not stored, so its sender's retry is not a "duplicate".
    assert await redis.exists(keys.seen(inbound(100).dedupe_key)) == 0


async def test_read_takes_the_most_urgent_priority_first(redis: Redis, keys: Keys) -> None:
    queue = await make_queue(redis, keys)
    for n in range(5):
        await queue.admit(inbound(n), 2)
    await queue.admit(inbound(50), 1)
    await queue.admit(inbound(60), 0)
    first = await queue.read("c1", 2)
    assert [(e.priority, e.message.message_id) for e in first] == [(0, "m60")]
    second = await queue.read("c1", 3)
    assert [(e.priority, e.message.message_id) for e in second] == [(1, "m50")]
    third = await queue.read("c1", 3)
    assert [e.message.message_id for e in third] == ["m0", "m1", "m2"]


async def test_blocking_read_wakes_up_for_a_new_message(redis: Redis, keys: Keys) -> None:
    queue = await make_queue(redis, keys)
    reader = asyncio.create_task(queue.read("c1", 10, block_ms=3000))
    await asyncio.sleep(0.2)
    await queue.admit(inbound(1), 1)
    entries = await asyncio.wait_for(reader, 5)
    assert [(e.priority, e.message.message_id) for e in entries] == [(1, "m1")]


async def test_finish_records_one_reply_acks_and_frees_the_slot(redis: Redis, keys: Keys) -> None:
    queue = await make_queue(redis, keys)
    admission = await queue.admit(inbound(1), 0)
    [entry] = await queue.read("c1", 1)
    assert entry.ticket_id == admission.ticket_id
    reply = Reply.for_message(
        entry.message, ticket_id=entry.ticket_id, priority=0, text="answer", source=ReplySource.LLM
    )
    assert await queue.finish(entry, reply) == 1
    again = Reply.for_message(
        entry.message,
        ticket_id=entry.ticket_id,
        priority=0,
        text="a second answer",
        source=ReplySource.LLM,
    )
    assert await queue.finish(entry, again) == 0
    stored = await queue.stored_reply(entry.ticket_id)
    assert stored is not None and stored.text == "answer"
    assert await redis.xlen(keys.outbox) == 1
    assert await queue.depths() == {0: 0, 1: 0, 2: 0}


async def test_claim_stale_takes_over_idle_entries_with_delivery_counts(
    redis: Redis, keys: Keys
) -> None:
    queue = await make_queue(redis, keys)
    await queue.admit(inbound(1), 2)
    [taken] = await queue.read("crashed", 1)
    assert await queue.claim_stale("rescuer", min_idle_ms=60_000) == []
    await asyncio.sleep(0.15)
    [claimed] = await queue.claim_stale("rescuer", min_idle_ms=100)
    assert claimed.entry_id == taken.entry_id and claimed.deliveries == 2
    await asyncio.sleep(0.15)
    [again] = await queue.claim_stale("third", min_idle_ms=100)
    assert again.deliveries == 3


async def test_heartbeat_keeps_an_entry_from_being_claimed(redis: Redis, keys: Keys) -> None:
    queue = await make_queue(redis, keys)
    await queue.admit(inbound(1), 2)
    entries = await queue.read("busy", 1)
    await asyncio.sleep(0.15)
    await queue.heartbeat("busy", entries)
    assert await queue.claim_stale("other", min_idle_ms=100) == []


async def test_dead_letter_keeps_a_copy_and_replies_once(redis: Redis, keys: Keys) -> None:
    queue = await make_queue(redis, keys)
    await queue.admit(inbound(1, "poison"), 2)
    [entry] = await queue.read("c1", 1)
    reply = Reply.for_message(
        entry.message,
        ticket_id=entry.ticket_id,
        priority=2,
        text="sorry",
        source=ReplySource.FALLBACK,
    )
    assert await queue.finish(entry, reply, dead_reason="deliveries=6")
    dead = await redis.xrange(keys.dead_letters)
    assert dead is not None
    [(_, fields)] = dead
    assert fields is not None
    assert fields["reason"] == "deliveries=6"
    assert InboundMessage.from_json(fields["m"]).text == "poison"
    assert await queue.depths() == {0: 0, 1: 0, 2: 0}


async def test_answer_directly_replies_once_without_the_queue(redis: Redis, keys: Keys) -> None:
    queue = await make_queue(redis, keys)
    first = await queue.answer_directly(
        inbound(1), "Hi! I can help with orders.", ReplySource.TEMPLATE
    )
    again = await queue.answer_directly(inbound(1), "Hi again", ReplySource.TEMPLATE)
    assert first.status == "queued" and again.status == "duplicate"
    assert again.ticket_id == first.ticket_id
    reply = await queue.stored_reply(first.ticket_id)
    assert reply is not None and reply.text == "Hi! I can help with orders."
    assert reply.source is ReplySource.TEMPLATE
    assert await redis.xlen(keys.outbox) == 1
    assert await queue.depths() == {0: 0, 1: 0, 2: 0}
    # The same message id cannot then be admitted for an LLM answer as well.
    assert (await queue.admit(inbound(1), 2)).status == "duplicate"


async def test_admission_survives_a_redis_that_lost_its_scripts(redis: Redis, keys: Keys) -> None:
    queue = await make_queue(redis, keys)
    await queue.admit(inbound(1), 2)
    await redis.script_flush()  # what a Redis restart without persistence does to scripts
    results = await asyncio.gather(*(queue.admit(inbound(n), 2) for n in range(2, 6)))
    assert [r.status for r in results] == ["queued"] * 4
    assert await queue.depths() == {0: 0, 1: 0, 2: 5}


def test_ticket_ids_are_unique_and_short() -> None:
    tickets = {new_ticket_id() for _ in range(10_000)}
    assert len(tickets) == 10_000
    assert all(len(t) <= 20 and t.isalnum() for t in tickets)


class AlwaysAcknowledge:
    """Peak mode as if every answer were far off."""

    def acknowledgement(self, priority: int, locale: str | None) -> str | None:
        return "we have it: {ticket}"

    def follow_up(self, locale: str | None) -> str:
        return "added: {ticket}"

    def admitted(self, priority: int, acked: bool) -> None:
        pass


async def test_acknowledgements_a_full_one_then_short_ones_and_none_while_people_have_it(
    redis: Redis, keys: Keys
) -> None:
    queue = await make_queue(redis, keys, acks=AlwaysAcknowledge(), merge_bursts=True)

    def said(n: int) -> InboundMessage:
        return dataclasses.replace(inbound(n), conversation_id="c1", group=True)

    first = await queue.admit(said(1), 2)
    second = await queue.admit(said(2), 2)
    entries: Any = await redis.xrange(keys.outbox)
    acks = [Reply.from_json(f["r"]) for _, f in entries]
    assert [a.text for a in acks] == [
        f"we have it: {first.ticket_id}",
        f"added: {second.ticket_id}",
    ]
    assert {a.source for a in acks} == {ReplySource.ACK}
    assert acks[0].reply_id == "A" + first.ticket_id
    assert (await queue.admit(said(3), 2, wait_until=time.time() + 5)).status == "queued"
    assert await redis.xlen(keys.outbox) == 2  # a synchronous waiter gets the answer itself
    await redis.hset(keys.handover(said(1).conversation_key), "status", "owned")
    await queue.admit(said(4), 2)
    assert await redis.xlen(keys.outbox) == 2  # people have the conversation: they answer
    assert await queue.answer_if_idle(said(5), "template", ReplySource.TEMPLATE, 2) is None


async def test_stale_entries_behind_many_live_ones_are_found_on_a_later_claim(
    redis: Redis, keys: Keys
) -> None:
    queue = await make_queue(redis, keys)
    for n in range(30):
        await queue.admit(inbound(n), 2)
    live = await queue.read("alive", 25)  # a live worker holds the 25 oldest entries
    dead = await queue.read("dead", 5)  # then a worker takes 5 and dies
    await asyncio.sleep(0.05)
    await queue.heartbeat("alive", live)  # the live worker's entries are not idle
    found: list[str] = []
    for _ in range(10):  # each call looks at 10 x count pending entries
        found += [e.ticket_id for e in await queue.claim_stale("rescuer", 40, count=1)]
        if len(found) == len(dead):
            break
    assert sorted(found) == sorted(e.ticket_id for e in dead)


async def test_an_outage_refuses_every_admission_but_logs_one_line(
    redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    queue = await make_queue(redis, keys)

    async def down(batch: Any) -> Any:
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(queue, "_admit_batch", down)
    results = await asyncio.gather(
        *(queue.admit(inbound(n), 2) for n in range(200)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailable) for r in results)
    lines = [r.getMessage() for r in caplog.records if "admission failed" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("admission failed: ConnectionError")
