"""The queue split into lanes (PEAKDESK_SHARDS), end to end: on a Redis Cluster every script
stays in one slot, the lanes spread over the masters, and every message is answered once, in
order within its conversation, with the figures added up over the lanes."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster

from core.keys import Keys
from core.queue import PriorityQueue
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Service, answer_all, inbound, message, wired_settings

SHARDS = 4
USERS = 16
EACH = 3


async def test_a_load_over_lanes_is_answered_once_each_in_order(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    lanes = Keys(keys.prefix, shards=SHARDS)
    settings = wired_settings(
        lanes,
        fake_llm.base_url,
        receiver.url,
        peakdesk_burst_window_s=0.2,  # bursts merged: the turn lock and burst list per lane
        peakdesk_flood_limit=EACH,  # the flood limit's state lives in the lanes too
    )
    async with Service(settings, redis, workers=2) as svc:
        tickets = set()
        for round_ in range(EACH):
            for user in range(USERS):
                n = user * 100 + round_
                payload = message(n, f"question {round_} about parcel {n}", user_id=f"u{user}")
                status, body, _ = await svc.post("gw", payload)
                assert status == 202 and body["status"] == "queued"
                tickets.add(body["ticket_id"])
        # One over the limit: its notice comes from the lane of its conversation.
        status, throttled, _ = await svc.post("gw", message(999, "again?", user_id="u0"))
        assert throttled["status"] == "throttled" and throttled["notice"] is True
        async with asyncio.timeout(20):
            while len(answered := _answered(receiver)) < USERS * EACH:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # nothing more may come
        depths = await svc.runtime.queue.depths()
        await svc.runtime.ledger.flush()
        dashboard = await svc.runtime.ledger.dashboard(depths)
        await svc.runtime.peak.refresh()

    # Tickets name their lane; the conversations spread over every lane.
    assert {lanes.for_ticket(t).lane for t in tickets} == set(range(SHARDS))
    # Every message answered once (alone or with its burst), in order per customer.
    assert sorted(answered) == sorted(f"m-{u * 100 + r}" for u in range(USERS) for r in range(EACH))
    per_user: dict[str, list[str]] = defaultdict(list)
    for callback in receiver.accepted:
        if callback["source"] == "llm":
            per_user[callback["user_id"]] += callback["message_ids"]
    for customer, ids in per_user.items():
        assert ids == sorted(ids, key=lambda m: int(m[2:]) % 100), customer
    notices = [c for c in receiver.accepted if c["source"] == "notice"]
    assert [c["message_id"] for c in notices] == ["m-999"]
    # The figures add the lanes up.
    assert depths == {0: 0, 1: 0, 2: 0}
    # (Acknowledgements are no answers: a loaded machine's estimates may send some.)
    answers = [c for c in receiver.accepted if c["source"] not in ("notice", "ack")]
    assert sum(dashboard.answers_today.values()) == len(answers)
    assert svc.runtime.peak.depths == {0: 0, 1: 0, 2: 0}

    if isinstance(redis, RedisCluster):  # the lanes live on more than one master
        owners = {redis.get_node_from_key(lane.outbox).name for lane in lanes.lanes}
        assert len(owners) >= 2


def _answered(receiver: CallbackReceiver) -> list[str]:
    return [
        mid
        for callback in receiver.accepted
        if callback["source"] == "llm"
        for mid in callback["message_ids"]
    ]


async def test_entries_with_the_same_id_in_two_lanes_are_both_answered_at_once(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    # Stream entry ids are unique per stream only: two lanes can hand out the same id.
    lanes = Keys(keys.prefix, shards=2)
    queue = PriorityQueue(redis, lanes)
    await queue.ensure_groups()
    first = inbound(1)
    second = next(
        m
        for m in (inbound(n) for n in range(2, 50))
        if lanes.for_conversation(m.conversation_key)
        != lanes.for_conversation(first.conversation_key)
    )
    for queued in (first, second):
        lane = lanes.for_conversation(queued.conversation_key)
        ticket = queue.new_ticket(queued)
        fields = {"t": ticket, "m": queued.to_json(), "e": repr(time.time()), "w": "0"}
        await redis.xadd(lane.stream(2), fields, id="1-1")  # type: ignore[arg-type]
    started = time.monotonic()
    # claim_idle_s 30: an entry the worker skipped would wait that long to be taken over.
    replies = await answer_all(queue, redis, lanes, fake_llm, replies=2, claim_idle_s=30.0)
    assert sorted(r.message_id for r in replies) == sorted([first.message_id, second.message_id])
    assert time.monotonic() - started < 10


async def test_the_read_loop_lives_on_after_an_unexpected_error(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    await queue.admit(inbound(1), 2)
    real_read = queue.read
    failures = [KeyError("a bug")]

    async def read_once_failing(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_read(*args, **kwargs)

    monkeypatch.setattr(queue, "read", read_once_failing)
    [reply] = await answer_all(queue, redis, keys, fake_llm, replies=1)
    assert reply.message_id == "m1" and not failures


async def test_a_master_without_the_script_costs_no_wrong_duplicate_answer(
    redis: Redis, keys: Keys, request: pytest.FixtureRequest
) -> None:
    lanes = Keys(keys.prefix, shards=12)
    queue = PriorityQueue(redis, lanes)
    await queue.ensure_groups()
    await queue.admit(inbound(0), 1)  # the script is loaded everywhere
    if isinstance(redis, RedisCluster):  # one master loses it (restarted, or just promoted)
        victim = request.getfixturevalue("redis_cluster").masters()[0]
        with victim.client() as client:
            client.script_flush()
    else:
        await redis.script_flush()
    results = await asyncio.gather(*(queue.admit(inbound(n), 1) for n in range(1, 61)))
    assert [r.status for r in results] == ["queued"] * 60
    assert sum((await queue.depths()).values()) == 61
