"""Replayed and forged WeChat pushes, over real HTTP against the running service (issue 14, §2).

WeChat's query signature covers the Token, the timestamp and the nonce, never the body. So a
captured query string must be good once and only near its time, and with WECHAT_AES_KEY set
only an encrypted body with a valid ``msg_signature`` is taken (wechatpy seals the pushes).
"""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from adapters.wechat.messages import parse
from core.keys import Keys
from core.store import connect_redis
from tests.adapters.wechat.test_wechat_ingress import post, push, sealed, signed
from tests.adapters.wechat.test_wechat_pipeline import wechat_service
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.harness import Service

WINDOW_S = 300


async def send(svc: Service, body: str, query: dict[str, str]) -> tuple[int, str]:
    return await post(svc.url("/wechat"), body, query)


async def url_check(svc: Service, query: dict[str, str]) -> tuple[int, str]:
    async with svc.client.get(svc.url("/wechat"), params={**query, "echostr": "e1"}) as r:
        return r.status, await r.text()


async def queued(svc: Service) -> int:
    return sum((await svc.runtime.queue.depths()).values())


@pytest.mark.parametrize(
    "offset", [1 - int(time.time()), -WINDOW_S - 1, WINDOW_S + 1], ids=["1970", "stale", "future"]
)
async def test_a_push_signed_outside_the_300_s_window_is_refused(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, wechat_api: FakeWeChatAPI, offset: int
) -> None:
    svc_ = wechat_service(keys, redis, fake_llm, wechat_api, 0.2, aes_key=None, workers=0)
    async with svc_ as svc:
        status, body = await send(svc, push(), signed(int(time.time()) + offset))
        assert (status, await queued(svc)) == (401, 0)
        assert "timestamp" in body
        # The same for the URL check: no echo for a stale signature.
        status, body = await url_check(svc, signed(int(time.time()) + offset))
        assert status == 401 and "e1" not in body


async def test_a_captured_query_string_is_good_for_one_push_only(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, wechat_api: FakeWeChatAPI
) -> None:
    """The attack: one query string, then other bodies impersonating other OpenIDs."""
    async with wechat_service(keys, redis, fake_llm, wechat_api, 3.0, aes_key=None) as svc:
        query = signed()
        status, body = await send(svc, push("我的订单到哪了？", msg_id="1"), query)
        assert status == 200 and parse(body.encode())["Content"].startswith("Echo: ")
        for forged in (
            push("我的订单到哪了？", msg_id="2", FromUserName="oVictim"),  # another customer
            push("我的订单到哪了？", msg_id="1"),  # the same body again
        ):
            status, body = await send(svc, forged, query)
            assert status == 401 and "nonce" in body, body
    assert fake_llm.calls == 1


async def test_every_process_shares_the_nonce_memory(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, wechat_api: FakeWeChatAPI
) -> None:
    one = wechat_service(keys, redis, fake_llm, wechat_api, 0.2, aes_key=None, workers=0)
    other = wechat_service(keys, redis, fake_llm, wechat_api, 0.2, aes_key=None, workers=0)
    async with one as first, other as second:
        query = signed()
        assert (await send(first, push(msg_id="1"), query))[0] == 200
        status, body = await send(second, push(msg_id="2", FromUserName="oVictim"), query)
        assert status == 401 and "nonce" in body
        assert await queued(first) == 1


async def test_with_an_aes_key_only_encrypted_pushes_are_taken(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, wechat_api: FakeWeChatAPI
) -> None:
    async with wechat_service(keys, redis, fake_llm, wechat_api, 0.2, workers=0) as svc:
        status, body = await send(svc, push(msg_id="1"), signed())  # plain: refused
        assert status == 401 and "encrypt" in body
        assert await queued(svc) == 0
        envelope, query = sealed(push(msg_id="2"), signed())
        assert (await send(svc, envelope, query))[0] == 200
        assert await queued(svc) == 1
        status, body = await send(svc, envelope, query)  # the same sealed push, replayed
        assert status == 401 and "nonce" in body


async def test_the_url_check_echoes_a_fresh_signature_once(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, wechat_api: FakeWeChatAPI
) -> None:
    async with wechat_service(keys, redis, fake_llm, wechat_api, 0.2, workers=0) as svc:
        query = signed()
        assert await url_check(svc, query) == (200, "e1")
        status, body = await url_check(svc, query)
        assert status == 401 and "nonce" in body
        envelope, sealed_query = sealed(push(), query)  # the URL check's query on a push
        status, body = await send(svc, envelope, sealed_query)
        assert status == 401 and "nonce" in body
        assert await queued(svc) == 0


async def test_a_refused_request_does_not_use_up_its_nonce(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, wechat_api: FakeWeChatAPI
) -> None:
    """Checks run signature, freshness, msg_signature, then the nonce memory: what fails an
    earlier check is not remembered (junk cannot fill the memory or burn WeChat's nonces)."""
    async with wechat_service(keys, redis, fake_llm, wechat_api, 0.2, workers=0) as svc:
        query = signed()
        envelope, good = sealed(push(), query)
        assert (await send(svc, envelope, {**good, "signature": "0" * 40}))[0] == 401
        assert (await send(svc, envelope, {**good, "msg_signature": "0" * 40}))[0] == 401
        assert (await send(svc, push(), query))[0] == 401  # plain, in safe mode
        assert (await send(svc, envelope, good))[0] == 200
        assert await queued(svc) == 1


async def test_a_push_that_could_not_be_stored_can_be_retried_with_its_nonce(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, wechat_api: FakeWeChatAPI
) -> None:
    """Not stored (503: the queue is full) means WeChat retries: the nonce must still work."""
    svc_ = wechat_service(
        keys, redis, fake_llm, wechat_api, 0.2, aes_key=None, workers=0, peakdesk_max_queue=1
    )
    async with svc_ as svc:
        assert (await send(svc, push(msg_id="1"), signed()))[0] == 200
        retried = signed()
        assert (await send(svc, push(msg_id="2"), retried))[0] == 503  # the queue is full
        assert (await send(svc, push(msg_id="2"), retried))[0] == 503  # still full: not 401
        [entry] = await svc.runtime.queue.read("test", 10)
        await svc.runtime.queue.ack(entry)  # room again
        assert (await send(svc, push(msg_id="2"), retried))[0] == 200
        [entry] = await svc.runtime.queue.read("test", 10)
        assert entry.message.message_id == "2"


async def test_redis_out_of_reach_at_the_nonce_check_is_a_503(
    keys: Keys, fake_llm: FakeOpenAI, wechat_api: FakeWeChatAPI
) -> None:
    dead = connect_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        async with wechat_service(keys, dead, fake_llm, wechat_api, 0.2, workers=0) as svc:
            status, body = await url_check(svc, signed())
            assert status == 503 and "e1" not in body
            envelope, query = sealed(push(), signed())
            assert (await send(svc, envelope, query))[0] == 503
    finally:
        await dead.aclose()
