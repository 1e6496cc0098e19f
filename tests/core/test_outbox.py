"""Outbox delivery rules, on fakeredis and the real Redis, with an in-process channel."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from redis.asyncio import Redis

from core.errors import DeliveryError
from core.keys import Keys
from core.metrics import Metrics
from core.models import Reply, ReplySource
from core.outbox import SENDING, SENT, Outbox
from core.queue import GROUP, ensure_group
from tests.harness import inbound


class RecordingSender:
    """A channel that records what it was given and fails as scripted."""

    def __init__(self, *failures: DeliveryError) -> None:
        self.failures = list(failures)
        self.sent: list[tuple[float, Reply]] = []
        self.attempts = 0

    async def send(self, reply: Reply) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((time.monotonic(), reply))


def reply_for(n: int) -> Reply:
    return Reply.for_message(
        inbound(n), ticket_id=f"T{n}", priority=2, text=f"answer {n}", source=ReplySource.LLM
    )


async def deliver(
    redis: Redis,
    keys: Keys,
    sender: RecordingSender,
    *,
    until: int,
    claim_idle_s: float = 30.0,
    **options: Any,
) -> None:
    outbox = Outbox(
        redis,
        keys,
        {"webhook": sender},
        consumer="c1",
        metrics=Metrics(),
        backoff_base_s=0.01,
        claim_idle_s=claim_idle_s,
        **options,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(outbox.run(stop))
    try:
        async with asyncio.timeout(10):
            while await redis.xlen(keys.outbox) > until:  # noqa: ASYNC110 - a Redis read
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task


async def test_a_reply_is_sent_once_and_removed(redis: Redis, keys: Keys) -> None:
    await ensure_group(redis, keys.outbox)
    await redis.xadd(keys.outbox, {"r": reply_for(1).to_json()})
    sender = RecordingSender()
    await deliver(redis, keys, sender, until=0)
    assert [r.text for _, r in sender.sent] == ["answer 1"]
    assert await redis.get(keys.delivery_claim("T1")) == SENT


async def test_a_reply_sent_before_a_lost_ack_is_not_sent_again(redis: Redis, keys: Keys) -> None:
    await ensure_group(redis, keys.outbox)
    await redis.xadd(keys.outbox, {"r": reply_for(1).to_json()})
    await redis.xreadgroup(GROUP, "crashed", {keys.outbox: ">"})  # pending with a dead consumer
    await redis.set(keys.delivery_claim("T1"), SENT)
    sender = RecordingSender()
    await deliver(redis, keys, sender, until=0, claim_idle_s=0.1)
    assert sender.attempts == 0


async def test_a_send_interrupted_by_a_crash_is_sent_again(redis: Redis, keys: Keys) -> None:
    await ensure_group(redis, keys.outbox)
    await redis.xadd(keys.outbox, {"r": reply_for(1).to_json()})
    await redis.xreadgroup(GROUP, "crashed", {keys.outbox: ">"})
    await redis.set(keys.delivery_claim("T1"), SENDING)
    sender = RecordingSender()
    await deliver(redis, keys, sender, until=0, claim_idle_s=0.1)
    assert sender.attempts == 1


async def test_the_channels_retry_after_is_honoured(redis: Redis, keys: Keys) -> None:
    await ensure_group(redis, keys.outbox)
    await redis.xadd(keys.outbox, {"r": reply_for(1).to_json()})
    sender = RecordingSender(DeliveryError("429", retry_after=0.4))
    started = time.monotonic()
    await deliver(redis, keys, sender, until=0)
    assert sender.attempts == 2
    assert sender.sent[0][0] - started >= 0.4


async def test_a_refused_reply_is_kept_aside_not_retried(redis: Redis, keys: Keys) -> None:
    await ensure_group(redis, keys.outbox)
    await redis.xadd(keys.outbox, {"r": reply_for(1).to_json()})
    sender = RecordingSender(DeliveryError("blocked by the user", retryable=False))
    await deliver(redis, keys, sender, until=0)
    assert sender.attempts == 1
    dead = await redis.xrange(keys.dead_deliveries)
    assert dead is not None and len(dead) == 1
    fields = dead[0][1]
    assert fields is not None and Reply.from_json(fields["r"]).ticket_id == "T1"
    assert fields["why"] == "blocked by the user"


async def test_a_channel_down_longer_than_the_attempts_gets_the_reply_once_back(
    redis: Redis, keys: Keys
) -> None:
    # Found by tests/faults: Telegram answering 5xx for longer than the backoff ladder of
    # WEBHOOK_CALLBACK_MAX_ATTEMPTS put the replies in the undelivered ones for good.
    await ensure_group(redis, keys.outbox)
    await redis.xadd(keys.outbox, {"r": reply_for(1).to_json()})
    sender = RecordingSender(*[DeliveryError("telegram unavailable: 502")] * 6)
    await deliver(redis, keys, sender, until=0, max_attempts=2, backoff_cap_s=0.02)
    assert sender.attempts == 7 and [r.text for _, r in sender.sent] == ["answer 1"]
    assert await redis.xlen(keys.dead_deliveries) == 0


async def test_a_channel_down_past_the_retry_time_gets_the_reply_set_aside(
    redis: Redis, keys: Keys
) -> None:
    await ensure_group(redis, keys.outbox)
    await redis.xadd(keys.outbox, {"r": reply_for(1).to_json()})
    sender = RecordingSender(*[DeliveryError("gateway answered 503")] * 10_000)
    await deliver(redis, keys, sender, until=0, max_attempts=2, retry_for_s=0.3, backoff_cap_s=0.02)
    assert sender.attempts >= 2 and sender.sent == []
    assert await redis.xlen(keys.dead_deliveries) == 1


class DownChannel(RecordingSender):
    """A channel answering 5xx until ``up`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.up = asyncio.Event()

    async def send(self, reply: Reply) -> None:
        self.attempts += 1
        if not self.up.is_set():
            raise DeliveryError("telegram unavailable: 502")
        self.sent.append((time.monotonic(), reply))


async def test_a_channel_that_is_down_does_not_hold_back_the_others(
    redis: Redis, keys: Keys
) -> None:
    # Found by tests/faults: Telegram's retries held every slot, the callbacks waited.
    await ensure_group(redis, keys.outbox)
    for n in range(1, 5):
        reply = dataclasses.replace(reply_for(n), channel="telegram")
        await redis.xadd(keys.outbox, {"r": reply.to_json()})
    await redis.xadd(keys.outbox, {"r": reply_for(9).to_json()})
    telegram, webhook = DownChannel(), RecordingSender()
    outbox = Outbox(
        redis,
        keys,
        {"webhook": webhook, "telegram": telegram},
        consumer="c1",
        metrics=Metrics(),
        concurrency=2,
        backoff_base_s=0.2,
        backoff_cap_s=0.2,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(outbox.run(stop))
    try:
        async with asyncio.timeout(5):
            while not webhook.sent:  # noqa: ASYNC110 - another task's progress
                await asyncio.sleep(0.02)
        assert telegram.sent == []
        telegram.up.set()
        async with asyncio.timeout(5):
            while await redis.xlen(keys.outbox) > 0:  # noqa: ASYNC110 - a Redis read
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    assert sorted(r.ticket_id for _, r in telegram.sent) == ["T1", "T2", "T3", "T4"]


async def test_a_reply_waiting_for_its_retry_is_left_pending_at_once_on_shutdown(
    redis: Redis, keys: Keys
) -> None:
    await ensure_group(redis, keys.outbox)
    await redis.xadd(keys.outbox, {"r": reply_for(1).to_json()})
    sender = RecordingSender(DeliveryError("gateway down"))
    outbox = Outbox(
        redis, keys, {"webhook": sender}, consumer="c1", metrics=Metrics(), backoff_base_s=60
    )
    stop = asyncio.Event()
    task = asyncio.create_task(outbox.run(stop))
    async with asyncio.timeout(5):
        while sender.attempts == 0:  # noqa: ASYNC110 - set by the outbox's task
            await asyncio.sleep(0.01)
    started = time.monotonic()
    stop.set()
    await task
    # Not the 10 s given to deliveries under way, nor the minute of its backoff.
    assert time.monotonic() - started < 2.0
    pending: Any = await redis.xpending(keys.outbox, GROUP)
    assert pending["pending"] == 1  # another process takes it over after the idle time
    assert sender.sent == [] and await redis.xlen(keys.dead_deliveries) == 0
