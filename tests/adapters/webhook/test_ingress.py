"""The webhook contract, from outside: real HTTP in, signed callbacks out."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from adapters.webhook.signing import signed_headers
from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import WEBHOOK_SECRET, Service, make_settings, message, wired_settings


async def test_happy_path_queues_then_calls_back_once_with_the_answer(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        status, body, _ = await svc.post("shop-gw", message(1, "hello, do you ship to Canada?"))
        assert status == 202
        assert body["status"] == "queued" and body["priority"] == 2 and body["ticket_id"]
        [callback] = await receiver.wait_for(1)
    assert callback == {
        "message_id": "m-1",
        "message_ids": ["m-1"],
        "conversation_id": "u-1",
        "user_id": "u-1",
        "ticket_id": body["ticket_id"],
        "reply_id": body["ticket_id"],
        "text": "Echo: hello, do you ship to Canada?",
        "source": "llm",
        "priority": 2,
    }
    assert receiver.received[0].signature_ok is True
    request = fake_llm.requests[0]
    assert request.headers["Authorization"] == "Bearer sk-test-key"
    assert request.json["model"] == "deepseek-v3.2"
    assert request.json["messages"][0]["role"] == "system"
    assert request.json["messages"][-1] == {
        "role": "user",
        "content": "hello, do you ship to Canada?",
    }


async def test_history_is_sent_with_the_next_message_of_the_conversation(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        # Two users in one conversation: a group's members share it (finding 5 of issue 14).
        room = {"conversation_id": "c1", "metadata": {"group": True}}
        await svc.post("gw", message(1, "first question", **room))
        await receiver.wait_for(1)
        await svc.post("gw", message(2, "second question", **room))
        await receiver.wait_for(2)
    roles = [(m["role"], m["content"]) for m in fake_llm.requests[1].json["messages"][1:]]
    assert roles == [
        ("user", "first question"),
        ("assistant", "Echo: first question"),
        ("user", "second question"),
    ]


async def test_duplicate_message_id_returns_first_ticket_and_no_second_reply(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        first = await svc.post("gw", message(7))
        await receiver.wait_for(1)
        second = await svc.post("gw", message(7, "different text, same id"))
        other_gateway = await svc.post("gw2", message(7))
        await receiver.wait_for(2)
    assert first[0] == 202
    assert second[0] == 200
    assert second[1] == {"status": "duplicate", "ticket_id": first[1]["ticket_id"]}
    assert other_gateway[0] == 202  # message ids are unique per gateway only
    assert [c["message_id"] for c in receiver.accepted] == ["m-7", "m-7"]
    assert len({c["ticket_id"] for c in receiver.accepted}) == 2
    # The same first question from another gateway's user shares the answer: one LLM call.
    assert [c["source"] for c in receiver.accepted] == ["llm", "cache"]
    assert fake_llm.calls == 1


async def test_bad_signature_stale_timestamp_and_missing_headers_are_401(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        wrong = await svc.post("gw", message(1), secret="not-the-secret")
        stale = await svc.post("gw", message(2), now=time.time() - 301)
        future = await svc.post("gw", message(3), now=time.time() + 301)
        unsigned = await svc.post("gw", message(4), secret=None)
        depths = await svc.runtime.queue.depths()
    for status, body, _ in (wrong, stale, future, unsigned):
        assert status == 401
        assert body["error"]
    assert "300" in stale[1]["error"]
    assert sum(depths.values()) == 0
    assert fake_llm.calls == 0


async def test_body_over_64_kib_is_413(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        status, body, _ = await svc.post("gw", message(1, text="x" * (65 * 1024)))
    assert status == 413
    assert "65536" in body["error"]


async def test_a_body_whose_content_encoding_does_not_decode_is_400(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        status, body, _ = await svc.post(
            "gw", b"not gzip at all", headers={"Content-Encoding": "gzip"}
        )  # aiohttp's ContentEncodingError: once a 500
    assert status == 400 and "cannot read body" in body["error"]


async def test_invalid_json_and_fields_are_400_naming_the_field(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    cases = [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        ({"user_id": "u", "text": "hi"}, "message_id"),
        ({"message_id": "m", "text": "hi"}, "user_id"),
        ({"message_id": "m", "user_id": "u"}, "text"),
        ({"message_id": "m", "user_id": "u", "text": ""}, "text"),
        ({"message_id": "m", "user_id": "u", "text": "   "}, "text"),
        ({"message_id": "m", "user_id": "u", "text": "x" * 4001}, "text"),
        ({"message_id": 5, "user_id": "u", "text": "hi"}, "message_id"),
        (
            {"message_id": "m", "user_id": "u", "text": "hi", "metadata": {"vip": "yes"}},
            "metadata.vip",
        ),
        ({"message_id": "m", "user_id": "u", "text": "hi", "metadata": []}, "metadata"),
        (
            {"message_id": "m", "user_id": "u", "text": "hi", "callback_url": "ftp://x"},
            "callback_url",
        ),
    ]
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        for payload, field in cases:
            status, body, _ = await svc.post("gw", payload)
            assert (status, body.get("field")) == (400, field), payload
            assert body["error"]
        bad_gateway = await svc.post("Bad.Name", message(1))
        bad_wait = await svc.post("gw", message(1), query="?wait=26")
    assert bad_gateway[0] == 400 and bad_gateway[1]["field"] == "gateway"
    assert bad_wait[0] == 400 and bad_wait[1]["field"] == "wait"


async def test_no_callback_url_anywhere_is_400(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    settings = make_settings(keys, holysheep_base_url=fake_llm.base_url)
    async with Service(settings, redis) as svc:
        status, body, _ = await svc.post("gw", message(1))
    assert (status, body["field"]) == (400, "callback_url")


async def test_callback_url_in_the_message_wins_over_the_default(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = make_settings(
        keys,
        holysheep_base_url=fake_llm.base_url,
        webhook_callback_url="http://127.0.0.1:9/nowhere",
    )
    async with Service(settings, redis) as svc:
        await svc.post("gw", message(1, callback_url=receiver.url))
        [callback] = await receiver.wait_for(1)
    assert callback["message_id"] == "m-1"


async def test_wait_returns_the_answer_inline_and_sends_no_callback(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        status, body, _ = await svc.post(
            "gw", message(1, "where is my order 12345?"), query="?wait=5"
        )
        await svc.post("gw", message(2, "a later message"))
        await receiver.wait_for(1)
    assert status == 200
    assert body["status"] == "answered"
    assert body["reply"]["text"] == "Echo: where is my order 12345?"
    assert body["reply"]["ticket_id"] == body["ticket_id"]
    assert [c["message_id"] for c in receiver.accepted] == ["m-2"]


async def test_wait_times_out_to_202_and_the_callback_follows(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    fake_llm.script(delay=1.5)
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        status, body, _ = await svc.post("gw", message(1), query="?wait=0.5")
        [callback] = await receiver.wait_for(1)
    assert status == 202 and body["status"] == "queued"
    assert callback["ticket_id"] == body["ticket_id"]


async def test_callback_is_retried_until_the_gateway_accepts_it(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    receiver.fail(503, times=2)
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        svc.runtime.outbox.backoff_base_s = 0.01
        await svc.post("gw", message(1))
        accepted = await receiver.wait_for(1)
    assert len(receiver.received) == 3
    assert len(accepted) == 1


async def test_unsigned_requests_accepted_on_loopback_when_no_secret_is_set(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = wired_settings(keys, fake_llm.base_url, receiver.url, webhook_secret=None)
    async with Service(settings, redis) as svc:
        status, _, _ = await svc.post("gw", message(1), secret=None)
    assert status == 202


async def test_health_ready_and_metrics(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        await svc.post("gw", message(1, "I was charged twice for my order"))
        await receiver.wait_for(1)
        async with svc.client.get(svc.url("/healthz")) as r:
            assert r.status == 200
        async with svc.client.get(svc.url("/readyz")) as r:
            assert r.status == 200
        async with svc.client.get(svc.url("/metrics")) as r:
            text = await r.text()
        async with svc.client.get(svc.url("/nope")) as r:
            assert r.status == 404 and (await r.json())["error"]
    assert 'peakdesk_messages_admitted_total{channel="webhook",priority="0"} 1.0' in text
    assert 'peakdesk_messages_processed_total{priority="0",source="llm"} 1.0' in text
    assert 'peakdesk_queue_depth{priority="0"} 0.0' in text
    assert "peakdesk_queue_wait_seconds_bucket" in text
    assert "peakdesk_llm_latency_seconds_count 1.0" in text
    assert 'peakdesk_llm_tokens_total{kind="prompt"}' in text
    assert "peakdesk_llm_cost_usd_total" in text


async def test_a_body_that_arrives_in_chunks_is_read_whole(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    body = json.dumps(message(1, "where is my parcel? " * 150)).encode()  # ~3 KB

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start : start + 500]
            await asyncio.sleep(0.005)

    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        headers = {"Content-Type": "application/json", **signed_headers(WEBHOOK_SECRET, body)}
        async with svc.client.post(
            svc.url("/webhook/gw"), data=chunks(), headers=headers
        ) as response:
            assert response.status == 202, await response.text()
