"""``POST /webhook/{gateway}?wait=N`` under many waiters: one shared watch of the replies per
process (not a poll per waiter), and a cap on the waiters."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Service, message, wired_settings

WAITERS = 40
WAIT_S = 1.0


def count_reply_reads(redis: Redis) -> Counter[str]:
    """Counts, from now on, the client's commands that read reply records (by command)."""
    reads: Counter[str] = Counter()
    execute: Any = redis.execute_command

    async def counting(*args: Any, **options: Any) -> Any:
        if any(":reply:" in str(arg) for arg in args[1:]):
            reads[str(args[0]).upper()] += 1
        return await execute(*args, **options)

    redis.execute_command = counting  # type: ignore[method-assign]
    return reads


async def test_concurrent_waiters_share_one_poll_of_the_reply_records(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    # No workers: no reply comes, every waiter waits its full second.
    settings = wired_settings(keys, fake_llm.base_url, receiver.url)
    async with Service(settings, redis, workers=0) as svc:
        reads = count_reply_reads(redis)
        answers = await asyncio.gather(
            *(svc.post("gw", message(n), query=f"?wait={WAIT_S:g}") for n in range(WAITERS))
        )
    assert [(status, body["status"]) for status, body, _ in answers] == [(202, "queued")] * WAITERS
    # A poll every 50 ms for everyone: about 20 reads in the second, whatever the waiters
    # (a poll per waiter made that 20 x 40 = 800).
    assert sum(reads.values()) <= 3 * WAIT_S / 0.05, reads


async def test_waiters_over_the_cap_get_503_with_retry_after_and_nothing_is_queued(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = wired_settings(
        keys, fake_llm.base_url, receiver.url, peakdesk_max_waiters=2, peakdesk_retry_after_s=7
    )
    async with Service(settings, redis, workers=0) as svc:
        waiting = [asyncio.create_task(svc.post("gw", message(n), query="?wait=2")) for n in (1, 2)]
        await asyncio.sleep(0.5)  # both are waiting now
        status, body, headers = await svc.post("gw", message(3), query="?wait=2")
        assert not any(task.done() for task in waiting)  # refused at once, not after a wait
        assert [(s, b["status"]) for s, b, _ in await asyncio.gather(*waiting)] == [
            (202, "queued")
        ] * 2
        again, body_again, _ = await svc.post("gw", message(3))  # it was not queued before
    assert status == 503 and headers["Retry-After"] == "7"
    assert "wait" in body["error"]
    assert (again, body_again["status"]) == (202, "queued")
