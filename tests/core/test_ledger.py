"""The dashboard figures are shared by all processes through Redis."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from core.keys import Keys
from core.ledger import Ledger, percentile, utc_day
from core.models import Reply, ReplySource
from core.queue import PriorityQueue
from tests.harness import inbound


def test_percentile_is_the_nearest_rank() -> None:
    assert percentile([], 0.95) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([float(v) for v in range(1, 101)], 0.95) == 95.0


async def test_the_dashboard_adds_up_every_process(redis: Redis, keys: Keys) -> None:
    one, two = Ledger(redis, keys), Ledger(redis, keys)
    one.record_waits({0: [0.5, 1.0], 2: [10.0]})
    two.record_waits({0: [2.0]})
    one.record_llm_call(0.002)
    two.record_llm_call(0.003)
    assert await redis.hget(keys.stats_day(utc_day()), "llm_calls") is None  # not yet written
    await one.flush()
    await two.flush()
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    await queue.admit(inbound(1), 2)
    [entry] = await queue.read("w", 1)
    await queue.answer_directly(inbound(2), "Hello!", ReplySource.TEMPLATE)
    await queue.finish(
        entry,
        Reply.for_message(
            entry.message, ticket_id=entry.ticket_id, priority=2, text="hi", source=ReplySource.LLM
        ),
    )
    board = await Ledger(redis, keys).dashboard(await queue.depths())
    assert board.p95_wait_s == {0: 2.0, 1: None, 2: 10.0}
    assert board.answers_today == {"llm": 1, "template": 1}
    assert board.without_llm_share == pytest.approx(0.5)
    assert board.cost_today_usd == pytest.approx(0.005)
    assert board.open_handovers == 0
    # Calls are counted per minute and reported for the last full one.
    minute = int(time.time() // 60)
    counted = [int(await redis.get(keys.stats_minute(m)) or 0) for m in (minute - 1, minute)]
    assert sum(counted) == 2 and board.llm_calls_last_minute in (0, 2)
    assert int(await redis.hget(keys.stats_day(utc_day()), "llm_calls") or 0) == 2
    assert 0 < await redis.ttl(keys.stats_day(utc_day())) <= 8 * 24 * 3600  # kept a week
