"""Long polling: getUpdates → the same accept() as the webhook; the offset only confirms what
was durably accepted; errors back off; a stop event ends even a long poll at once."""

from __future__ import annotations

import asyncio
import time

import fakeredis
from redis.asyncio import Redis

from adapters.telegram.bot import make_bot
from adapters.telegram.polling import TelegramPoller
from core.keys import Keys
from core.store import connect_redis
from tests.adapters.telegram.tg_stack import TelegramStack, close_bot
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegramAPI


async def test_polled_updates_are_queued_answered_and_then_confirmed(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    tg_api.max_poll_s = 0.1
    first, second = tg_api.updates.text(42, "hello"), tg_api.updates.sticker(43)
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api, polling=True) as tg:
        await tg_api.push_updates(first, second)
        sent = await tg_api.wait_for("sendMessage", 2)
        async with asyncio.timeout(5):
            while tg.poller.offset != second["update_id"] + 1:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await tg_api.wait_for("getUpdates", 2)
    assert sorted(c.params["text"][:5] for c in sent) == ["Echo:", "Sorry"]
    polls = tg_api.calls_to("getUpdates")
    assert polls[0].params["allowed_updates"] == ["message"] and polls[0].params["timeout"] == "1"
    assert polls[-1].params["offset"] == str(second["update_id"] + 1)


async def test_an_update_that_could_not_be_queued_is_not_confirmed(
    keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    dead = connect_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    update = tg_api.updates.text(42)
    try:
        async with TelegramStack(
            dead, keys, fake_llm.base_url, tg_api, workers=False, polling=True
        ) as tg:
            await tg_api.push_updates(update)
            await tg_api.wait_for("getUpdates", 2)  # fetched again after the back-off
            assert tg.poller.offset is None
    finally:
        await dead.aclose()
    assert all("offset" not in call.params for call in tg_api.calls_to("getUpdates"))


async def test_a_polled_text_over_telegrams_limit_is_skipped_not_queued(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    # getUpdates is the other way in: the converter's limit holds there too (4096
    # characters, what Telegram allows), and the update after it is still taken.
    tg_api.max_poll_s = 0.1
    huge, fine = tg_api.updates.text(42, "x" * 100_000), tg_api.updates.text(43, "hello")
    async with TelegramStack(
        redis, keys, fake_llm.base_url, tg_api, workers=False, polling=True
    ) as tg:
        await tg_api.push_updates(huge, fine)
        async with asyncio.timeout(5):
            while tg.poller.offset != fine["update_id"] + 1:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        [queued] = await tg.queue.read("c", 10)
    assert queued.message.text == "hello"


async def test_errors_back_off_then_polling_recovers(
    keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    tg_api.fail("getUpdates", 502)
    tg_api.fail("getUpdates", 409)  # a webhook is set, or another poller runs
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api, polling=True):
        await tg_api.push_updates(tg_api.updates.text(42, "still there?"))
        await tg_api.wait_for("sendMessage", 1)
    failed, conflict, recovered, *_ = tg_api.calls_to("getUpdates")
    assert (failed.status, conflict.status, recovered.status) == (502, 409, 200)
    # Back-off with jitter: 0.05-0.1 s after the first failure, 0.1-0.2 s after the second.
    assert conflict.at - failed.at >= 0.05 and recovered.at - conflict.at >= 0.1
    await redis.aclose()


async def test_a_stop_event_ends_a_long_poll_at_once(
    keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    tg_api.max_poll_s = 30.0
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api, workers=False) as tg:
        bot = make_bot(tg_api.token, tg_api.base_url)
        poller = TelegramPoller(bot, tg.ingress, poll_timeout_s=25)
        stop = asyncio.Event()
        polling = asyncio.create_task(poller.run(stop))
        await tg_api.wait_for("getMe", 1)
        async with asyncio.timeout(5):
            while not tg_api.polls_waiting:  # noqa: ASYNC110 - the fake's state
                await asyncio.sleep(0.01)
        stopped_at = time.monotonic()
        stop.set()
        await polling
        assert time.monotonic() - stopped_at < 0.5
        await close_bot(bot)
    await redis.aclose()
