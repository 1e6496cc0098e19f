"""The Telegram channel end to end: real update JSON posted to /telegram/webhook, the real core
(queue, worker, LLM client, outbox) and the real aiogram Bot talking to the fake Bot API."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from redis.asyncio import Redis

from adapters.telegram.templates import template
from core.keys import Keys
from core.queue import FloodLimit
from core.store import connect_redis
from tests.adapters.telegram.tg_stack import SECRET, TelegramStack
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegramAPI


async def until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():  # noqa: ASYNC110 - the condition reads Redis
            await asyncio.sleep(0.02)


async def test_a_text_is_answered_once_in_reply_as_plain_text_after_typing(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    fake_llm.latency = 0.3  # the worker shows "typing" every 0.2 s meanwhile
    update = tg_api.updates.text(42, "Where is my order 12345?")
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        status, body = await tg.post(update)
        assert (status, body) == (200, {})
        [sent] = await tg_api.wait_for("sendMessage", 1)
    assert sent.params == {
        "chat_id": "42",
        "text": "Echo: Where is my order 12345?",
        "reply_parameters": {
            "message_id": update["message"]["message_id"],
            "allow_sending_without_reply": True,
        },
    }  # no parse_mode: model output is plain text
    assert fake_llm.requests[0].json["messages"][-1]["content"] == "Where is my order 12345?"
    typing = [c for c in tg_api.calls_to("sendChatAction") if c.at < sent.at]
    assert len(typing) >= 2
    assert typing[0].params == {"chat_id": "42", "action": "typing"}


async def test_the_secret_token_is_required(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    update = tg_api.updates.text(42)
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api, workers=False) as tg:
        assert (await tg.post(update, secret=None))[0] == 401
        assert (await tg.post(update, secret=SECRET + "x"))[0] == 401
        assert (await tg.post(update, secret="ünïcode"))[0] == 401
        assert await tg.queued() == 0
        assert (await tg.post(update))[0] == 200
        assert await tg.queued() == 1


async def test_a_redelivered_update_is_queued_once_and_answered_once(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    text, sticker, forget = (
        tg_api.updates.text(42, "Do you ship to Canada?"),
        tg_api.updates.sticker(43),
        tg_api.updates.text(44, "/forget"),
    )
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        for update in (text, sticker, forget, text, sticker, forget):
            assert (await tg.post(update))[0] == 200
        await tg_api.wait_for("sendMessage", 3)
        await asyncio.sleep(0.2)
    assert sorted(int(c.params["chat_id"]) for c in tg_api.calls_to("sendMessage")) == [42, 43, 44]
    assert fake_llm.calls == 1
    assert (
        tg.metrics.registry.get_sample_value(
            "peakdesk_messages_duplicate_total", {"channel": "telegram"}
        )
        == 3
    )


async def test_503_when_redis_is_down_so_that_telegram_delivers_again(
    keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    dead = connect_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        async with TelegramStack(dead, keys, fake_llm.base_url, tg_api, workers=False) as tg:
            for update in (tg_api.updates.text(42), tg_api.updates.text(43, "/human")):
                status, body = await tg.post(update)
                assert status == 503 and body["error"]
    finally:
        await dead.aclose()


async def test_content_without_text_gets_a_polite_answer_without_the_llm(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        await tg.post(tg_api.updates.sticker(42))
        await tg.post(tg_api.updates.voice(43))
        sent = await tg_api.wait_for("sendMessage", 2)
    assert [c.params["text"] for c in sent] == [template("text_only", "en")] * 2
    assert fake_llm.calls == 0


async def test_a_caption_is_answered_like_a_text(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        await tg.post(tg_api.updates.caption(42, "This arrived broken"))
        [sent] = await tg_api.wait_for("sendMessage", 1)
    assert sent.params["text"] == "Echo: This arrived broken"


async def test_replies_of_one_chat_go_out_in_the_order_of_the_messages(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    async def slow_first(payload: dict[str, Any]) -> str:
        question = payload["messages"][-1]["content"]
        if question == "first":
            await asyncio.sleep(0.2)
        return f"answer to {question}"

    fake_llm.responder = slow_first
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        for text in ("first", "second"):
            await tg.post(tg_api.updates.text(42, text))
        sent = await tg_api.wait_for("sendMessage", 2)
    assert [c.params["text"] for c in sent] == ["answer to first", "answer to second"]
    replied = [c.params["reply_parameters"]["message_id"] for c in sent]
    assert replied == sorted(replied)


async def test_a_5000_character_answer_goes_out_as_two_messages_split_at_a_paragraph(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    first, second = "Shipping. " * 300, "Returns. " * 220
    fake_llm.responder = lambda _: f"{first.strip()}\n\n{second.strip()}"
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        await tg.post(tg_api.updates.text(42, "tell me everything"))
        sent = await tg_api.wait_for("sendMessage", 2)
        await asyncio.sleep(0.2)
    assert [c.params["text"] for c in tg_api.calls_to("sendMessage")] == [
        first.strip(),
        second.strip(),
    ]
    assert "reply_parameters" in sent[0].params and "reply_parameters" not in sent[1].params


async def test_429_is_retried_after_retry_after_and_delivered_exactly_once(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    tg_api.fail("sendMessage", 429, retry_after=1)
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        await tg.post(tg_api.updates.text(42))
        await tg_api.wait_for("sendMessage", 1)
        await asyncio.sleep(0.2)
    refused, delivered = tg_api.calls_to("sendMessage")
    assert (refused.status, delivered.status) == (429, 200)
    assert delivered.at - refused.at >= 1.0
    assert tg.events("rate_limited") == 1


async def test_a_blocked_bot_is_recorded_and_never_retried(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    tg_api.fail("sendMessage", 403)
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        await tg.post(tg_api.updates.text(42))

        async def dead_lettered() -> bool:
            return int(await redis.xlen(keys.dead_deliveries)) == 1

        await until(dead_lettered)
        await asyncio.sleep(0.2)
    assert [c.status for c in tg_api.calls_to("sendMessage")] == [403]
    assert tg.events("blocked") == 1
    assert await redis.exists(tg.sender.blocked_key(42))


async def test_in_groups_only_mentions_and_replies_to_the_bot_are_answered(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    group = -1001234567890
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        assert (await tg.post(tg_api.updates.text(group, "anyone here?")))[0] == 200
        assert await tg.queued() == 0 and tg.events("not_addressed") == 1
        await tg.post(tg_api.updates.mention(group, "where is my parcel?"))
        await tg.post(tg_api.updates.reply_to_bot(-1009999, "and the refund?"))
        sent = await tg_api.wait_for("sendMessage", 2)
    assert sorted(c.params["text"] for c in sent) == [
        "Echo: and the refund?",
        "Echo: where is my parcel?",
    ]
    assert {int(c.params["chat_id"]) for c in sent} == {group, -1009999}


async def test_commands_answer_directly_and_do_what_they_say(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        await tg.state.record_turn("telegram:123456789:3", [{"role": "user", "content": "hi"}])
        human = tg_api.updates.text(2, "/human")
        for update in (
            tg_api.updates.text(1, "/start"),
            human,
            tg_api.updates.text(3, "/forget"),
            tg_api.updates.text(4, f"/help@{tg_api.username}"),
        ):
            assert (await tg.post(update))[0] == 200
        sent = await tg_api.wait_for("sendMessage", 4)
        ticket = await redis.get(
            keys.seen(f"telegram:123456789:2:{human['message']['message_id']}")
        )
        reply = await tg.queue.stored_reply(str(ticket))
        handover = await tg.handover.get("telegram:123456789:2")
        history = await tg.state.history("telegram:123456789:3")
    by_chat = {int(c.params["chat_id"]): c.params["text"] for c in sent}
    assert by_chat == {
        1: template("start", "en"),
        2: template("human", "en"),
        3: template("forget", "en"),
        4: template("help", "en"),
    }
    assert "order status" in by_chat[1] and "/human" in by_chat[1]
    assert reply is not None and reply.priority == 1 and reply.source == "template"
    assert handover is None  # no staffed desk: nobody to hand over to (see tests/adapters/slack)
    assert history == []
    assert fake_llm.calls == 0


async def test_an_edit_is_acknowledged_and_not_answered_again(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    original = tg_api.updates.text(42, "Where is my ordr?")
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        await tg.post(original)
        await tg_api.wait_for("sendMessage", 1)
        assert (await tg.post(tg_api.updates.edited(original, "Where is my order?")))[0] == 200
        await asyncio.sleep(0.2)
    assert len(tg_api.calls_to("sendMessage")) == 1 and fake_llm.calls == 1
    assert tg.events("edited_ignored") == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"message": {"text": "no update_id"}}', 400),
        (b'{"update_id": 1, "message": {"message_id": 1, "text": "no chat"}}', 400),
        (b"x" * (1024 * 1024 + 1), 413),
        # A lone surrogate escape: once admitted, it hung the request (no UTF-8 for Redis).
        (
            b'{"update_id": 1, "message": {"message_id": 1, "chat": {"id": 1}, "text": "\\ud800"}}',
            400,
        ),
        (
            b'{"update_id": 1, "message": {"message_id": 1, "chat": {"id": 1}, "text": "'
            + b"x" * 4097
            + b'"}}',
            400,
        ),
    ],
)
async def test_bodies_that_are_not_updates_are_refused(
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    tg_api: FakeTelegramAPI,
    body: bytes,
    status: int,
) -> None:
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api, workers=False) as tg:
        answer, error = await tg.post(body)
    assert answer == status and error["error"]


async def test_logs_carry_neither_the_token_nor_customer_text(
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    tg_api: FakeTelegramAPI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    private = "jane.doe@example.com card 4111 1111 1111 1111"
    tg_api.fail("sendMessage", 400, description="Bad Request: chat not found")
    tg_api.fail("sendChatAction", 502, times=10)
    fake_llm.latency = 0.3
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        await tg.post(tg_api.updates.text(42, f"refund to {private}"))
        await tg.post(tg_api.updates.text(42, f"also {private}"), secret="wrong")

        async def dead_lettered() -> bool:
            return int(await redis.xlen(keys.dead_deliveries)) == 1

        await until(dead_lettered)
    logged = caplog.text
    assert "ticket" in logged and "chat not found" in logged  # the scenario did log
    for secret in (tg_api.token, tg_api.token.split(":")[1], SECRET, "jane.doe", "4111"):
        assert secret not in logged


async def test_a_flooding_user_gets_one_notice_and_the_rest_is_not_answered(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        tg.queue.flood = FloodLimit(2, 60)
        for n in range(5):
            assert (await tg.post(tg_api.updates.text(42, f"question number {n}?")))[0] == 200
        sent = await tg_api.wait_for("sendMessage", 3)
        await asyncio.sleep(0.3)  # nothing more may come
        metrics = tg.metrics.render().decode()
    texts = sorted(call.params["text"] for call in tg_api.calls_to("sendMessage"))
    assert len(texts) == 3 == len(sent)
    assert texts[:2] == ["Echo: question number 0?", "Echo: question number 1?"]
    assert texts[2].startswith("You are sending messages faster than we can read them")
    assert 'peakdesk_messages_throttled_total{channel="telegram"} 3.0' in metrics


async def test_a_flooding_user_gets_no_more_direct_answers_than_the_flood_limit(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, tg_api: FakeTelegramAPI
) -> None:
    # Stickers and commands are answered by the channel itself, without the queue: they
    # count against the sender's flood limit like questions do.
    async with TelegramStack(redis, keys, fake_llm.base_url, tg_api) as tg:
        tg.queue.flood = FloodLimit(2, 60)
        for n in range(6):
            update = tg_api.updates.sticker(42) if n % 2 else tg_api.updates.text(42, "/help")
            assert (await tg.post(update))[0] == 200
        sent = await tg_api.wait_for("sendMessage", 3)
        await asyncio.sleep(0.3)  # nothing more may come
        metrics = tg.metrics.render().decode()
    texts = [call.params["text"] for call in tg_api.calls_to("sendMessage")]
    assert len(texts) == 3 == len(sent)
    assert texts[:2] == [template("help", "en"), template("text_only", "en")]
    assert texts[2].startswith("You are sending messages faster than we can read them")
    assert 'peakdesk_messages_throttled_total{channel="telegram"} 4.0' in metrics
