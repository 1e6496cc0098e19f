"""Data lifecycle, from outside: history expires, and a customer's stored conversation data is
deleted on request (the gateway's signed call, or the admin API for any channel)."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from adapters.webhook.signing import signed_headers
from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import WEBHOOK_SECRET, Service, message, wired_settings

ADMIN = "admin-test-token-9c1e"


async def stored_keys(redis: Redis, keys: Keys, conversation: str) -> list[str]:
    found = [keys.history(conversation), keys.context(conversation)]
    return [k for k in found if await redis.exists(k)]


async def post_json(
    svc: Service, path: str, payload: object, headers: dict[str, str]
) -> tuple[int, dict[str, object]]:
    body = json.dumps(payload).encode()
    async with svc.client.post(svc.url(path), data=body, headers=headers) as response:
        return response.status, await response.json()


async def test_history_expires_after_its_ttl(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = wired_settings(keys, fake_llm.base_url, receiver.url, peakdesk_history_ttl_s=900)
    async with Service(settings, redis) as svc:
        await svc.post("gw", message(1, "where is order A1001?"))
        await receiver.wait_for(1)
    ttl = await redis.ttl(keys.history("webhook:gw:u-1"))
    assert 0 < ttl <= 900


async def test_gateway_forget_deletes_the_conversation_and_the_next_answer_starts_afresh(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    conversation = "webhook:gw:u-1"
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        await svc.post("gw", message(1, "my name is Jane, where is order A1001?"))
        await receiver.wait_for(1)
        assert await stored_keys(redis, keys, conversation)

        status, answer, _ = await svc.forget("gw", {"user_id": "u-1"})
        assert (status, answer["status"], answer["conversation_id"]) == (200, "forgotten", "u-1")
        assert answer["deleted"] >= 1
        assert await stored_keys(redis, keys, conversation) == []

        await svc.post("gw", {**message(1, "and my parcel?"), "message_id": "m-2"})
        await receiver.wait_for(2)
    later = fake_llm.requests[-1].json["messages"]
    assert not any("Jane" in m["content"] for m in later)  # no earlier turn was sent


async def test_gateway_forget_refuses_unsigned_and_malformed_requests(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        unsigned = await post_json(svc, "/webhook/gw/forget", {"user_id": "u-1"}, {})
        signed = {"Content-Type": "application/json"}
        answers = []
        for payload in ({}, {"user_id": 7}, [1]):
            body = json.dumps(payload).encode()
            answers.append(
                await post_json(
                    svc,
                    "/webhook/gw/forget",
                    payload,
                    {**signed, **signed_headers(WEBHOOK_SECRET, body, purpose="forget")},
                )
            )
    assert unsigned[0] == 401
    assert [status for status, _ in answers] == [400, 400, 400]
    assert all(body["error"] for _, body in answers)
    assert answers[0][1]["field"] == "conversation_id"


async def test_admin_forget_deletes_any_channels_conversation(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    wechat = "wechat:gh_0123456789ab:oOpenId42"
    await redis.rpush(keys.history(wechat), json.dumps({"role": "user", "content": "hi"}))
    await redis.hset(keys.context(wechat), "order id", "A1001")
    auth = {"Authorization": f"Bearer {ADMIN}"}
    target = {"channel": "wechat", "account": "gh_0123456789ab", "conversation_id": "oOpenId42"}

    settings = wired_settings(keys, fake_llm.base_url, receiver.url)
    async with Service(settings, redis) as svc:
        disabled = await post_json(svc, "/admin/forget", target, auth)
    settings = wired_settings(keys, fake_llm.base_url, receiver.url, peakdesk_admin_token=ADMIN)
    async with Service(settings, redis) as svc:
        wrong = await post_json(svc, "/admin/forget", target, {"Authorization": "Bearer nope"})
        no_account = await post_json(
            svc, "/admin/forget", {"channel": "wechat", "conversation_id": "oOpenId42"}, auth
        )
        assert await stored_keys(redis, keys, wechat)  # nothing deleted so far
        done = await post_json(svc, "/admin/forget", target, auth)
        again = await post_json(svc, "/admin/forget", target, auth)
    assert disabled[0] == 404
    assert wrong[0] == 401
    assert no_account[0] == 400 and "account" in str(no_account[1]["error"])
    assert done == (200, {"status": "forgotten", "deleted": 2})
    assert again == (200, {"status": "forgotten", "deleted": 0})
    assert await stored_keys(redis, keys, wechat) == []


async def test_admin_forget_refuses_an_authorization_that_is_not_utf8(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    # Header bytes that are not UTF-8 (0xff) reach the handler as surrogate escapes: the
    # token comparison encoded them strictly and raised (a 500). Sent raw: HTTP clients
    # refuse to.
    settings = wired_settings(keys, fake_llm.base_url, receiver.url, peakdesk_admin_token=ADMIN)
    async with Service(settings, redis) as svc:
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.server.port)
        writer.write(
            b"POST /admin/forget HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Authorization: Bearer \xff\r\nContent-Length: 2\r\n\r\n{}"
        )
        status_line = await reader.readline()
        writer.close()
        await writer.wait_closed()
    assert status_line.split()[1] == b"401"
