"""What one webhook signature may authorise, from outside: one request, to the route it was made
for, from the gateway whose secret made it. A captured message, forget request or reply
callback cannot be replayed elsewhere or again (README: The webhook contract)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from redis.asyncio import Redis

from adapters.webhook.replay import CLOCK_MARGIN_S
from adapters.webhook.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_headers
from core.keys import Keys
from core.store import connect_redis
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import WEBHOOK_SECRET, Service, message, wired_settings

SHOP_A = "shop-a-secret-5f0c2e91"
SHOP_B = "shop-b-secret-a37d4b08"


def signed(payload: dict[str, Any], secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    """A message body and the headers a gateway signs it with."""
    body = json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", **signed_headers(secret, body)}


async def test_a_message_signature_does_not_authorise_forget(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    body, headers = signed(message(1, "my name is Jane, where is order A1001?"))
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        assert (await svc.send("/webhook/gw", body, headers))[0] == 202
        await receiver.wait_for(1)
        status, answer, _ = await svc.send("/webhook/gw/forget", body, headers)
        await svc.post("gw", message(1, "and my parcel?") | {"message_id": "m-2"})
        await receiver.wait_for(2)
    assert status == 401 and answer["error"]
    later = fake_llm.requests[-1].json["messages"]
    assert any("Jane" in m["content"] for m in later)  # the conversation was not deleted


async def test_a_signed_message_replayed_to_another_gateway_is_refused(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    body, headers = signed(message(1, "do you ship to Canada?"))
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        first = await svc.send("/webhook/gw", body, headers)
        await receiver.wait_for(1)
        replayed = await svc.send("/webhook/other", body, headers)
        await asyncio.sleep(0.3)  # a second answer would be on its way by now
    assert first[0] == 202
    assert replayed[0] == 401 and "already used" in replayed[1]["error"]
    assert fake_llm.calls == 1 and len(receiver.received) == 1


async def test_a_used_signature_is_remembered_only_while_it_could_verify(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = wired_settings(keys, fake_llm.base_url, receiver.url)
    async with Service(settings, redis, workers=0) as svc:
        await svc.post("gw", message(1), now=time.time() - 200)  # 100 s left of its window
        remembered = [key async for key in redis.scan_iter(match=f"{keys.tag}:sig:*")]
        ttls = [await redis.ttl(key) for key in remembered]
    assert len(ttls) == 1
    assert 100 < ttls[0] <= 100 + 1 + CLOCK_MARGIN_S  # never for a whole window, never less


async def test_a_signed_message_is_accepted_once_by_every_process(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    body, headers = signed(message(1))
    settings = wired_settings(keys, fake_llm.base_url, receiver.url)
    async with Service(settings, redis) as one, Service(settings, redis, workers=0) as two:
        first = await one.send("/webhook/gw", body, headers)
        again = await one.send("/webhook/gw", body, headers)
        elsewhere = await two.send("/webhook/gw", body, headers)
        # Signed afresh (a later timestamp), the same message is what it always was.
        resigned = await one.post("gw", message(1), now=float(headers[TIMESTAMP_HEADER]) + 1)
    assert first[0] == 202
    assert again[0] == elsewhere[0] == 401
    assert "already used" in again[1]["error"] and "already used" in elsewhere[1]["error"]
    assert resigned[:2] == (200, {"status": "duplicate", "ticket_id": first[1]["ticket_id"]})


async def test_a_captured_callback_is_never_accepted_inbound(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        await svc.post("gw", message(1, "hello, what are your opening hours?"))
        await receiver.wait_for(1)
        [callback] = receiver.received
        captured = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: callback.headers[TIMESTAMP_HEADER],
            SIGNATURE_HEADER: callback.headers[SIGNATURE_HEADER],
        }
        same = await svc.send("/webhook/gw", callback.raw, captured)
        other = await svc.send("/webhook/gw2", callback.raw, captured)
        await asyncio.sleep(0.3)
    assert callback.signature_ok is True
    assert same[0] == other[0] == 401
    assert fake_llm.calls == 1 and len(receiver.received) == 1  # the bot did not answer itself


async def test_each_gateway_in_webhook_secrets_signs_for_itself_only(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    settings = wired_settings(
        keys,
        fake_llm.base_url,
        "http://127.0.0.1:9/unused",
        webhook_secrets={"shop-a": SHOP_A, "shop-b": SHOP_B},
    )
    async with CallbackReceiver(secret=SHOP_A) as shop_a, Service(settings, redis) as svc:
        own = await svc.post("shop-a", message(1, callback_url=shop_a.url), secret=SHOP_A)
        assert own[0] == 202
        await shop_a.wait_for(1)
        [callback] = shop_a.received
        for_b = await svc.post("shop-b", message(2), secret=SHOP_A)
        default_for_a = await svc.post("shop-a", message(3), secret=WEBHOOK_SECRET)
        b_itself = await svc.post("shop-b", message(4), secret=SHOP_B)
        unlisted = await svc.post("gw", message(5), secret=WEBHOOK_SECRET)
    assert callback.signature_ok is True  # the reply is signed with shop-a's secret
    assert for_b[0] == 401 and default_for_a[0] == 401
    assert b_itself[0] == unlisted[0] == 202


async def test_gateways_on_the_default_secret_share_one_gateway_limit(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = wired_settings(
        keys,
        fake_llm.base_url,
        receiver.url,
        peakdesk_gateway_limit=60,  # one a second
        webhook_secrets={"shop-b": SHOP_B},
    )
    async with Service(settings, redis, workers=0) as svc:
        renamed = [(await svc.post(f"shop-a-{n}", message(n)))[0] for n in range(1, 11)]
        own_secret = await svc.post("shop-b", message(11), secret=SHOP_B)
    assert renamed == [202] + [429] * 9  # new names, the same credential: one limit
    assert own_secret[0] == 202


async def test_a_message_refused_for_the_gateway_limit_may_be_sent_again_unchanged(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = wired_settings(keys, fake_llm.base_url, receiver.url, peakdesk_gateway_limit=60)
    body, headers = signed(message(2))
    async with Service(settings, redis, workers=0) as svc:
        await svc.post("gw", message(1))
        refused = await svc.send("/webhook/gw", body, headers)
        await asyncio.sleep(float(refused[2]["Retry-After"]))
        again = await svc.send("/webhook/gw", body, headers)  # nothing was stored: not a replay
    assert refused[0] == 429
    assert again[0] == 202 and again[1]["status"] == "queued"


async def test_redis_down_during_the_signature_check_is_503_never_401(
    keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    dead = connect_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    body, headers = signed(message(1))
    try:
        settings = wired_settings(keys, fake_llm.base_url, receiver.url)
        async with Service(settings, dead, workers=0) as svc:
            answers = [await svc.send("/webhook/gw", body, headers) for _ in range(2)]
    finally:
        await dead.aclose()
    for status, answer, sent in answers:
        assert status == 503 and answer["error"] and int(sent["Retry-After"]) > 0
