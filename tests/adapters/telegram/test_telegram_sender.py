"""TelegramReplySender against the fake Bot API: parts sent once, failures the outbox can act on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from redis.asyncio import Redis

from adapters.telegram.bot import make_bot
from adapters.telegram.sender import TelegramReplySender
from core.errors import DeliveryError
from core.keys import Keys
from core.metrics import Metrics
from core.models import InboundMessage, Reply, ReplySource
from core.ratelimit import Rate, RateLimiter
from tests.adapters.telegram.tg_stack import close_bot
from tests.fakes.telegram_api import FakeTelegramAPI

FAST = Rate(1000.0, burst=100)  # these tests are about what is sent, not when
CHAT = 42


def reply(text: str = "Your order ships today.", chat_id: int = CHAT, **route: str) -> Reply:
    return Reply(
        ticket_id="T1",
        priority=2,
        text=text,
        source=ReplySource.LLM,
        channel="telegram",
        account="123456789",
        message_id=f"{chat_id}:7",
        conversation_id=str(chat_id),
        user_id=str(chat_id),
        reply_to={"chat_id": str(chat_id), "message_id": "7", **route},
    )


@pytest.fixture
async def bot(tg_api: FakeTelegramAPI) -> AsyncIterator[Bot]:
    bot = make_bot(tg_api.token, tg_api.base_url)
    yield bot
    await close_bot(bot)


def sender_for(bot: Bot, redis: Redis, keys: Keys) -> TelegramReplySender:
    return TelegramReplySender(
        bot,
        RateLimiter(redis, keys),
        redis,
        keys,
        Metrics(),
        bot_id=123456789,
        chat_rate=FAST,
        group_rate=FAST,
    )


def events(sender: TelegramReplySender, event: str) -> float:
    value = sender.metrics.registry.get_sample_value(
        "peakdesk_channel_events_total", {"channel": "telegram", "event": event}
    )
    return value or 0.0


async def test_a_split_reply_resumes_after_the_failed_part_and_never_repeats_one(
    redis: Redis, keys: Keys, bot: Bot, tg_api: FakeTelegramAPI
) -> None:
    parts = ["A" * 3000, "B" * 3000, "C" * 3000]
    tg_api.fail("sendMessage", 500, skip=1)
    with pytest.raises(DeliveryError) as failed:
        await sender_for(bot, redis, keys).send(reply("\n\n".join(parts)))
    assert failed.value.retryable
    assert tg_api.sent_texts() == parts[:1]
    # The retry may run in another process: the progress is in Redis.
    await sender_for(bot, redis, keys).send(reply("\n\n".join(parts)))
    assert tg_api.sent_texts() == parts
    await sender_for(bot, redis, keys).send(reply("\n\n".join(parts)))
    assert tg_api.sent_texts() == parts
    first, *rest = tg_api.calls_to("sendMessage", ok_only=True)
    assert first.params["reply_parameters"]["message_id"] == 7
    assert all("reply_parameters" not in call.params for call in rest)


async def test_a_deleted_customer_message_is_answered_without_the_reply_link(
    redis: Redis, keys: Keys, bot: Bot, tg_api: FakeTelegramAPI
) -> None:
    tg_api.fail("sendMessage", 400, description="Bad Request: message to be replied not found")
    sender = sender_for(bot, redis, keys)
    await sender.send(reply())
    refused, sent = tg_api.calls_to("sendMessage")
    assert "reply_parameters" in refused.params and "reply_parameters" not in sent.params
    assert sent.ok and events(sender, "reply_not_found") == 1


@pytest.mark.parametrize(
    ("status", "description", "retryable"),
    [
        (400, "Bad Request: chat not found", False),
        (401, "Unauthorized", False),
        (500, "Internal Server Error", True),
        (502, "Bad Gateway", True),
    ],
)
async def test_refusals_are_final_and_outages_are_retried(
    redis: Redis,
    keys: Keys,
    bot: Bot,
    tg_api: FakeTelegramAPI,
    status: int,
    description: str,
    retryable: bool,
) -> None:
    tg_api.fail("sendMessage", status, description=description)
    with pytest.raises(DeliveryError) as failed:
        await sender_for(bot, redis, keys).send(reply())
    assert failed.value.retryable is retryable
    assert tg_api.token not in str(failed.value)


async def test_429_carries_telegrams_retry_after(
    redis: Redis, keys: Keys, bot: Bot, tg_api: FakeTelegramAPI
) -> None:
    tg_api.fail("sendMessage", 429, retry_after=7)
    sender = sender_for(bot, redis, keys)
    with pytest.raises(DeliveryError) as failed:
        await sender.send(reply())
    assert failed.value.retryable and failed.value.retry_after == 7.0
    assert failed.value.status == 429 and events(sender, "rate_limited") == 1


async def test_403_is_final_and_recorded(
    redis: Redis, keys: Keys, bot: Bot, tg_api: FakeTelegramAPI
) -> None:
    tg_api.fail("sendMessage", 403)
    sender = sender_for(bot, redis, keys)
    with pytest.raises(DeliveryError) as failed:
        await sender.send(reply())
    assert not failed.value.retryable and failed.value.status == 403
    assert await redis.exists(f"{keys.tag}:tg:blocked:123456789:{CHAT}")
    assert events(sender, "blocked") == 1


async def test_an_unreachable_bot_api_is_a_retryable_failure(
    redis: Redis, keys: Keys, tg_api: FakeTelegramAPI
) -> None:
    bot = make_bot(tg_api.token, "http://127.0.0.1:1")  # nothing listens on port 1
    try:
        with pytest.raises(DeliveryError) as failed:
            await sender_for(bot, redis, keys).send(reply())
    finally:
        await close_bot(bot)
    assert failed.value.retryable and tg_api.token not in str(failed.value)


async def test_a_group_that_became_a_supergroup_gets_the_reply_at_its_new_id(
    redis: Redis, keys: Keys, bot: Bot, tg_api: FakeTelegramAPI
) -> None:
    tg_api.fail(
        "sendMessage",
        400,
        description="Bad Request: group chat was upgraded to a supergroup chat",
        migrate_to_chat_id=-1009876543210,
    )
    await sender_for(bot, redis, keys).send(reply(chat_id=-4001))
    assert tg_api.sent_texts(-1009876543210) == ["Your order ships today."]


async def test_group_replies_count_against_the_group_limit_too(
    redis: Redis, keys: Keys, bot: Bot, tg_api: FakeTelegramAPI
) -> None:
    await sender_for(bot, redis, keys).send(reply(chat_id=-1001))
    for name in ("tg:123456789:chat:-1001", "tg:123456789:group:-1001", "tg:123456789:all"):
        assert await redis.exists(keys.rate(name)), name


async def test_a_chat_gets_a_burst_of_two_then_one_message_a_second(
    redis: Redis, keys: Keys, bot: Bot, tg_api: FakeTelegramAPI
) -> None:
    sender = TelegramReplySender(
        bot, RateLimiter(redis, keys), redis, keys, Metrics(), bot_id=123456789
    )
    for text in ("one", "two", "three"):
        await sender.send(reply(text))
    await sender.send(reply("elsewhere", chat_id=43))  # another chat: no wait
    first, second, third, other = tg_api.calls_to("sendMessage")
    assert second.at - first.at < 0.5 and third.at - first.at >= 0.95
    assert other.at - third.at < 0.5


async def test_a_reply_without_a_chat_is_refused_for_good(
    redis: Redis, keys: Keys, bot: Bot, tg_api: FakeTelegramAPI
) -> None:
    broken = reply()
    broken.reply_to = {}
    with pytest.raises(DeliveryError) as failed:
        await sender_for(bot, redis, keys).send(broken)
    assert not failed.value.retryable and tg_api.calls == []


async def test_typing_goes_to_the_chat_and_its_topic_and_is_skipped_over_budget(
    redis: Redis, keys: Keys, bot: Bot, tg_api: FakeTelegramAPI
) -> None:
    sender = sender_for(bot, redis, keys)
    message = InboundMessage(
        channel="telegram",
        account="123456789",
        message_id="-100:5",
        user_id="9",
        conversation_id="-100",
        text="hi",
        reply_to={"chat_id": "-100", "message_id": "5", "message_thread_id": "17"},
    )
    for _ in range(15):
        await sender.typing(message)
    shown = tg_api.calls_to("sendChatAction")
    assert 10 <= len(shown) < 15
    assert shown[0].params == {"chat_id": "-100", "action": "typing", "message_thread_id": "17"}
