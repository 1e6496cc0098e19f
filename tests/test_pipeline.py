"""End to end through the real app: LLM failures, Redis outages, priority order."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio import Redis

from bots.runtime import Runtime
from core.keys import Keys
from core.logcontext import ContextFilter
from core.store import connect_redis
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import WEBHOOK_SECRET, Service, message, wired_settings

# No templated answer exists for it: when the LLM fails, the apology is the answer.
NO_TEMPLATE = "my blender makes a strange noise, is that normal?"


async def test_llm_429_with_retry_after_then_success(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    fake_llm.script(status=429, headers={"retry-after-ms": "300"})
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        await svc.post("gw", message(1))
        [callback] = await receiver.wait_for(1)
    assert callback["source"] == "llm"
    assert fake_llm.calls == 2
    assert fake_llm.requests[1].at - fake_llm.requests[0].at >= 0.3


async def test_llm_500_three_times_gives_the_fallback_with_ticket_and_code(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    fake_llm.script(status=500, times=3)
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        _, body, _ = await svc.post("gw", message(1, NO_TEMPLATE))
        [callback] = await receiver.wait_for(1)
    assert fake_llm.calls == 3
    assert callback["source"] == "fallback"
    assert body["ticket_id"] in callback["text"]
    assert "http_500" in callback["text"] or "server_error" in callback["text"]


async def test_llm_401_is_not_retried_and_the_customer_gets_the_fallback(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    fake_llm.script(status=401, error_code="invalid_api_key")
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        _, body, _ = await svc.post("gw", message(1, NO_TEMPLATE))
        [callback] = await receiver.wait_for(1)
        await asyncio.sleep(0.2)
    assert fake_llm.calls == 1
    assert callback["source"] == "fallback"
    assert body["ticket_id"] in callback["text"] and "invalid_api_key" in callback["text"]


async def test_without_an_api_key_customers_get_the_fallback(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = wired_settings(keys, fake_llm.base_url, receiver.url, holysheep_api_key=None)
    async with Service(settings, redis) as svc:
        await svc.post("gw", message(1, NO_TEMPLATE))
        [callback] = await receiver.wait_for(1)
    assert callback["source"] == "fallback" and "not_configured" in callback["text"]
    assert fake_llm.calls == 0


async def test_redis_down_answers_503_with_retry_after_never_202(
    keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    dead = connect_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        async with Service(
            wired_settings(keys, fake_llm.base_url, receiver.url), dead, workers=0
        ) as svc:
            status, body, headers = await svc.post("gw", message(1))
            async with svc.client.get(svc.url("/readyz")) as ready:
                ready_status = ready.status
    finally:
        await dead.aclose()
    assert status == 503
    assert int(headers["Retry-After"]) > 0 and body["error"]
    assert ready_status == 503


async def test_priority_0_behind_1000_priority_2_is_answered_first(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    # One worker taking one message at a time: "answered first" is then exact, not a race
    # between the urgent message and the 49 others started beside it.
    # No acknowledgements either: every callback is then an answer.
    settings = wired_settings(
        keys,
        fake_llm.base_url,
        receiver.url,
        peakdesk_max_concurrent=1,
        peakdesk_first_response_s=0,
    )
    limit = asyncio.Semaphore(50)

    async def post(svc: Service, n: int, text: str) -> int:
        async with limit:
            status, _, _ = await svc.post("gw", message(n, text))
            return status

    async with Service(settings, redis, workers=0) as gateway:
        statuses = await asyncio.gather(
            *(post(gateway, n, f"do you sell gift cards? ({n})") for n in range(1000))
        )
        urgent = await post(gateway, 5000, "my payment failed but money was taken, help")
        assert set(statuses) == {202} and urgent == 202
        worker = Runtime(settings, workers=1, redis=redis)
        await worker.start()
        try:
            callbacks = await receiver.wait_for(1001, timeout=60)
        finally:
            await worker.stop()
    by_message = {c["message_id"]: c for c in callbacks}
    assert by_message["m-5000"]["priority"] == 0
    replies = {m: await worker.queue.stored_reply(c["ticket_id"]) for m, c in by_message.items()}
    urgent_at = replies.pop("m-5000").created_at  # type: ignore[union-attr]
    assert all(urgent_at < r.created_at for r in replies.values())  # type: ignore[union-attr]
    assert len(callbacks) == 1001


async def test_logs_carry_no_secrets_and_no_customer_text(
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    receiver: CallbackReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    private = "jane.doe@example.com, +1 555 123 4567, card 4111 1111 1111 1111"
    fake_llm.script(status=500, error_message=f"upstream echoed: {private}", times=3)
    receiver.fail(500)
    async with Service(wired_settings(keys, fake_llm.base_url, receiver.url), redis) as svc:
        svc.runtime.outbox.backoff_base_s = 0.01
        await svc.post("gw", message(1, f"refund me, {private}"))
        await svc.post("gw", message(2, "hello"), secret="wrong-secret")
        await receiver.wait_for(1)
    logged = caplog.text
    assert "ticket" in logged  # the scenario did log
    for secret in ("sk-test-key", WEBHOOK_SECRET, "jane.doe", "555 123", "4111"):
        assert secret not in logged


async def test_message_text_is_logged_only_when_enabled_and_then_redacted(
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    receiver: CallbackReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(ContextFilter())  # as configure_logging's handler has
    private = "where is my order? I am jane.doe@example.com, +1 555 123 4567"
    for enabled in (False, True):
        settings = wired_settings(
            keys, fake_llm.base_url, receiver.url, peakdesk_log_message_text=enabled
        )
        async with Service(settings, redis) as svc:
            await svc.post("gw", message(int(enabled), private))
            await receiver.wait_for(1 + enabled)
    lines = [r.getMessage() for r in caplog.records if r.name == "peakdesk.worker"]
    [line] = [text for text in lines if text.startswith("answering")]
    assert line == "answering: where is my order? I am [redacted], [redacted]"
    [record] = [r for r in caplog.records if r.getMessage() == line]
    assert record.ticket and record.conversation  # type: ignore[attr-defined]
