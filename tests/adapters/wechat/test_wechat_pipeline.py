"""WeChat through the whole service: passive reply in time, else one customer-service message."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from adapters.wechat.crypto import SafeMode
from adapters.wechat.messages import parse
from core.keys import Keys
from tests.adapters.wechat.test_wechat_crypto import AES_KEY, TOKEN
from tests.adapters.wechat.test_wechat_ingress import push, sealed
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.wechat_api import APP_ID, APP_SECRET, FakeWeChatAPI
from tests.harness import Service, make_settings


def decrypted(reply: str) -> dict[str, str]:
    """The fields of an encrypted passive reply."""
    sealed_reply = parse(reply.encode())
    xml = SafeMode(TOKEN, AES_KEY, APP_ID).decrypt(
        sealed_reply["Encrypt"],
        sealed_reply["MsgSignature"],
        sealed_reply["TimeStamp"],
        sealed_reply["Nonce"],
    )
    return parse(xml.encode())


def wechat_service(
    keys: Keys,
    redis: Redis,
    fake_llm: FakeOpenAI,
    api: FakeWeChatAPI,
    passive_s: float,
    *,
    aes_key: str | None = AES_KEY,
    workers: int = 1,
    **overrides: Any,
) -> Service:
    """peakdesk with a WeChat account (in safe mode unless ``aes_key`` is None)."""
    settings = make_settings(
        keys,
        holysheep_base_url=fake_llm.base_url,
        wechat_token=TOKEN,
        wechat_app_id=APP_ID,
        wechat_app_secret=APP_SECRET,
        wechat_aes_key=aes_key,
        wechat_api_base=api.base_url,
        wechat_passive_reply_s=passive_s,
        **overrides,
    )
    return Service(settings, redis, workers=workers)


async def push_to(svc: Service, xml: str) -> tuple[int, str]:
    """A push as WeChat sends it in safe mode (each try with a query of its own)."""
    envelope, query = sealed(xml)
    async with svc.client.post(svc.url("/wechat"), params=query, data=envelope.encode()) as r:
        return r.status, await r.text()


async def test_an_answer_ready_in_time_is_the_passive_reply_and_nothing_else(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, wechat_api: FakeWeChatAPI
) -> None:
    async with wechat_service(keys, redis, fake_llm, wechat_api, 3.0) as svc:
        status, body = await push_to(svc, push("你们支持哪些付款方式？"))
        await asyncio.sleep(0.5)  # nothing else goes out
    assert status == 200 and decrypted(body)["Content"].startswith("Echo: ")
    assert wechat_api.sent == []


async def test_a_late_answer_goes_out_once_as_a_customer_service_message(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, wechat_api: FakeWeChatAPI
) -> None:
    async def slow(payload: dict[str, Any]) -> str:
        await asyncio.sleep(0.6)
        return "answer: " + str(payload["messages"][-1]["content"])

    fake_llm.responder = slow
    async with wechat_service(keys, redis, fake_llm, wechat_api, 0.2) as svc:
        first = await push_to(svc, push("我的包裹什么时候到？", msg_id="555"))
        retry = await push_to(svc, push("我的包裹什么时候到？", msg_id="555"))  # WeChat retries
        async with asyncio.timeout(10):
            while not wechat_api.sent:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
    assert first == retry == (200, "success")
    assert wechat_api.sent == [
        {
            "touser": "oOpenId123",
            "msgtype": "text",
            "text": {"content": "answer: 我的包裹什么时候到？"},
        }
    ]
    assert fake_llm.calls == 1
