"""Hand-over records over their life, from outside (issue 14, §8): forgetting a customer
deletes the record and its transcript, records that expired leave the open count, and a
conversation escalated again and again is not posted to Slack again and again."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.asyncio import Redis

from adapters.slack.blocks import RESOLVE
from core.handover import REQUESTED
from core.keys import Keys
from tests.adapters.slack.slack_stack import ADMIN, TelegramDesk, to_slack_app
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_api import (
    SUPPORT_CHANNEL,
    FakeSlackAPI,
    action_body,
    command_body,
    event_body,
    thread_message,
)
from tests.fakes.telegram_api import BOT_ID
from tests.harness import Service, message

CUSTOMER = "webhook:gw:u-1"
ADDRESS = "12 Baker Street, Fairview"
HUMAN = "I want to speak to a human agent"


async def post_json(
    svc: Service, path: str, payload: object, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **headers}
    async with svc.client.post(svc.url(path), data=body, headers=headers) as response:
        return response.status, await response.json()


async def forget_u1(svc: Service, route: str = "webhook") -> tuple[int, dict[str, Any]]:
    """Forget the conversation of webhook user u-1, as the gateway or the admin asks."""
    if route == "webhook":
        status, answer, _ = await svc.forget("gw", {"user_id": "u-1"})
        return status, answer
    target = {"channel": "webhook", "account": "gw", "conversation_id": "u-1"}
    return await post_json(svc, "/admin/forget", target, {"Authorization": f"Bearer {ADMIN}"})


def parents(slack: FakeSlackAPI) -> list[dict[str, Any]]:
    """The hand-overs posted to the support channel (not the notes in their threads)."""
    return [p for p in slack.posted(SUPPORT_CHANNEL) if "thread_ts" not in p]


async def stored_text(redis: Redis, keys: Keys) -> str:
    """Everything the test's keys hold, as one text (to look for a customer's words)."""
    found: list[str] = []
    async for key in redis.scan_iter(match="{" + keys.prefix + "*", count=1000):
        kind = await redis.type(key)
        value: Any
        if kind == "string":
            value = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(await redis.smembers(key))
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1)
        elif kind == "stream":
            value = await redis.xrange(key)
        else:
            value = kind
        found.append(f"{key} {json.dumps(value, ensure_ascii=False)}")
    return "\n".join(found)


@pytest.mark.parametrize("route", ["webhook", "admin"])
async def test_forgetting_a_handed_over_conversation_deletes_its_record_and_transcript(
    route: str,
    svc: Service,
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    receiver: CallbackReceiver,
    slack: FakeSlackAPI,
) -> None:
    # The bot's answers quote nothing: reply records (the bot's answers) are kept until they
    # expire, forgetting does not find them (README: Customer data).
    fake_llm.responder = lambda _: "Thanks, noted."
    await svc.post("gw", message(1, f"I moved, my new address is {ADDRESS}"))
    await receiver.wait_for(1)
    _, body, _ = await svc.post("gw", message(2, HUMAN, user_id="u-1"))
    ticket = body["ticket_id"]
    [parent] = await slack.wait_for("chat.postMessage", 1)
    await receiver.wait_for(2)
    thread = str(parent.answer["ts"]) if parent.answer else ""
    assert ADDRESS in json.dumps(parent.params["blocks"])  # the transcript
    assert ADDRESS in await stored_text(redis, keys)

    status, answer = await forget_u1(svc, route)
    assert status == 200 and answer["deleted"] >= 4  # the history, the hand-over's 3 keys

    # The desk is told in the thread; the parent no longer shows the transcript.
    await slack.wait_for("chat.update", 1)
    await slack.wait_for("chat.postMessage", 2)
    [note] = slack.posted(SUPPORT_CHANNEL, thread_ts=thread)
    assert "deleted" in note["text"]
    [update] = slack.updates(SUPPORT_CHANNEL)
    assert update["ts"] == thread and "Baker" not in json.dumps(update)
    # Staff writing in the thread now reach nobody.
    event = thread_message("Hello, are you still there?", thread)
    assert (await to_slack_app(svc, "/slack/events", event_body(event, "Ev9")))[0] == 200
    # The customer starts afresh with the bot.
    await svc.post("gw", message(3, "Do you ship to Norway?", user_id="u-1"))
    answers = await receiver.wait_for(3)
    assert answers[2]["source"] == "llm" and len(receiver.accepted) == 3
    assert await svc.runtime.desk.get(CUSTOMER) is None
    assert await svc.runtime.desk.open_count() == 0
    assert not await redis.exists(keys.handover_ticket(ticket))
    assert not await redis.exists(keys.handover_thread(f"{SUPPORT_CHANNEL}:{thread}"))
    assert "Baker" not in await stored_text(redis, keys)


async def test_telegram_forget_deletes_the_hand_over_too(
    telegram_desk: TelegramDesk, slack: FakeSlackAPI
) -> None:
    await telegram_desk.customer_sends("/human")
    await slack.wait_for("chat.postMessage", 1)
    await telegram_desk.customer_sends("/forget")
    await telegram_desk.telegram.wait_for("sendMessage", 2)
    desk = telegram_desk.svc.runtime.desk
    assert await desk.get(f"telegram:{BOT_ID}:42") is None
    assert await desk.open_count() == 0


async def test_the_open_count_leaves_out_hand_overs_whose_record_expired(
    svc: Service, redis: Redis, keys: Keys, slack: FakeSlackAPI
) -> None:
    await svc.post("gw", message(1, HUMAN))
    await slack.wait_for("chat.postMessage", 1)
    _, body = await to_slack_app(svc, "/slack/commands", command_body("stats"))
    assert "Open hand-overs: 1" in json.loads(body)["text"]
    await redis.delete(keys.handover(CUSTOMER))  # as its 7-day TTL would
    _, body = await to_slack_app(svc, "/slack/commands", command_body("stats"))
    assert "Open hand-overs: 0" in json.loads(body)["text"]
    assert await svc.runtime.desk.open_count() == 0
    assert await redis.zcard(keys.for_conversation(CUSTOMER).handovers_open) == 0


async def test_a_conversation_escalated_again_soon_is_not_posted_again(
    svc: Service, receiver: CallbackReceiver, slack: FakeSlackAPI
) -> None:
    await svc.post("gw", message(1, HUMAN))
    [parent] = await slack.wait_for("chat.postMessage", 1)
    thread = str(parent.answer["ts"]) if parent.answer else ""
    await to_slack_app(svc, "/slack/interactivity", action_body(RESOLVE, CUSTOMER))
    await slack.wait_for("chat.postMessage", 2)  # "Resolved" in the thread

    # Asked again within PEAKDESK_ESCALATE_INTERVAL_S: the hand-over reopens in its thread.
    await svc.post("gw", message(2, HUMAN, user_id="u-1"))
    await slack.wait_for("chat.postMessage", 3)
    handover = await svc.runtime.desk.get(CUSTOMER)
    assert handover is not None and handover.status == REQUESTED
    assert handover.thread == f"{SUPPORT_CHANNEL}:{thread}"
    notes = slack.posted(SUPPORT_CHANNEL, thread_ts=thread)
    assert "again" in notes[-1]["text"]
    assert await svc.runtime.desk.open_count() == 1

    # Forgotten, then asked again at once: no record to reopen, and no new post; the customer
    # is not told that a person will answer (nobody was told).
    await forget_u1(svc)
    await svc.post("gw", message(3, HUMAN, user_id="u-1"))
    told = (await receiver.wait_for(3))[2]["text"]
    assert "not passed to our support team" in told and "will take over" not in told
    await slack.wait_for("chat.postMessage", 4)  # the note that the data was deleted
    await svc.post("gw", message(4, "Still there?", user_id="u-1"))
    await receiver.wait_for(4)
    assert len(parents(slack)) == 1
    assert len(slack.posted(SUPPORT_CHANNEL)) == 4
