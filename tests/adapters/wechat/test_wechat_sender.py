"""Customer-service messages against the fake WeChat API: token cache, refresh, 45015."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from redis.asyncio import Redis

from adapters.wechat.sender import WeChatSender
from core.errors import DeliveryError
from core.keys import Keys
from core.models import Reply, ReplySource
from tests.fakes.wechat_api import APP_ID, APP_SECRET, FakeWeChatAPI


def reply(text: str, openid: str = "oOpenId123") -> Reply:
    return Reply(
        ticket_id="T1",
        priority=1,
        text=text,
        source=ReplySource.LLM,
        channel="wechat",
        account="gh_account",
        message_id="24680",
        conversation_id=openid,
        user_id=openid,
        reply_to={"openid": openid, "account": "gh_account"},
    )


@pytest.fixture
async def api() -> AsyncIterator[FakeWeChatAPI]:
    async with FakeWeChatAPI() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def sender(
    http: aiohttp.ClientSession, redis: Redis, keys: Keys, api: FakeWeChatAPI
) -> WeChatSender:
    return WeChatSender(
        http, redis, keys, app_id=APP_ID, app_secret=APP_SECRET, api_base=api.base_url
    )


async def test_one_token_serves_every_process_until_wechat_refuses_it(
    redis: Redis, keys: Keys, api: FakeWeChatAPI, http: aiohttp.ClientSession
) -> None:
    one, two = sender(http, redis, keys, api), sender(http, redis, keys, api)  # two processes
    await one.send(reply("已发货"))
    await two.send(reply("预计明天送达"))
    assert api.tokens_issued == 1
    assert [m["text"]["content"] for m in api.sent] == ["已发货", "预计明天送达"]
    assert api.sent[0] == {"touser": "oOpenId123", "msgtype": "text", "text": {"content": "已发货"}}
    api.expire_tokens()  # expired early: the send is tried again with a fresh token
    await two.send(reply("还有其他问题吗？"))
    assert api.tokens_issued == 2 and len(api.sent) == 3


async def test_outside_the_48_hour_window_is_final_and_busy_is_retried(
    redis: Redis, keys: Keys, api: FakeWeChatAPI, http: aiohttp.ClientSession
) -> None:
    wechat = sender(http, redis, keys, api)
    api.answer_next(45015, -1, 40003)
    with pytest.raises(DeliveryError) as outside:
        await wechat.send(reply("迟到的回复"))
    assert outside.value.retryable is False and "48-hour" in str(outside.value)
    with pytest.raises(DeliveryError) as busy:
        await wechat.send(reply("稍后重试"))
    assert busy.value.retryable is True
    with pytest.raises(DeliveryError) as unknown_user:
        await wechat.send(reply("无效用户"))
    assert unknown_user.value.retryable is False
    assert api.sent == []


async def test_an_unreachable_api_is_retried_later(
    redis: Redis, keys: Keys, http: aiohttp.ClientSession
) -> None:
    wechat = WeChatSender(
        http, redis, keys, app_id=APP_ID, app_secret=APP_SECRET, api_base="http://127.0.0.1:9"
    )
    with pytest.raises(DeliveryError) as failed:
        await wechat.send(reply("x"))
    assert failed.value.retryable is True
