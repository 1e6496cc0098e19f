"""Slack for support staff, as ``peakdesk serve`` runs it: the real Bolt app on the server,
the real ``AsyncWebClient`` against a fake Slack Web API, requests signed as Slack signs them.

The full loop: a customer (webhook gateway or Telegram) is handed over, the hand-over is posted
to the support channel, staff reply in its thread, the reply reaches the customer.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from adapters.slack.blocks import RESOLVE
from core.handover import OWNED, RESOLVED, RETURNED
from tests.adapters.slack.slack_stack import TelegramDesk, to_slack_app
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_api import (
    SIGNING_SECRET,
    STAFF_USER_ID,
    SUPPORT_CHANNEL,
    FakeSlackAPI,
    action_body,
    command_body,
    event_body,
    signed_headers,
    thread_message,
)
from tests.harness import Service, message

CUSTOMER = "webhook:gw:u-1"


async def staff_writes(
    svc: Service, text: str, thread_ts: str, *, event_id: str = "Ev1", **kw: Any
) -> tuple[int, str]:
    event = thread_message(text, thread_ts, **kw)
    return await to_slack_app(svc, "/slack/events", event_body(event, event_id))


async def escalate_webhook_customer(svc: Service, slack: FakeSlackAPI) -> tuple[str, str]:
    """The customer asks for a person; returns the ticket and the thread's ts."""
    status, body, _ = await svc.post("gw", message(1, "I want to speak to a human agent"))
    assert status == 202
    await slack.wait_for("chat.postMessage", 1)
    return body["ticket_id"], first_ts(slack)


def first_ts(slack: FakeSlackAPI) -> str:
    """The ts Slack gave the first post: the thread of the hand-over."""
    first = slack.calls_to("chat.postMessage", ok_only=True)[0]
    assert first.answer is not None
    return str(first.answer["ts"])


async def settle(seconds: float = 0.5) -> None:
    """Give anything that should not happen the time to happen."""
    await asyncio.sleep(seconds)


async def test_full_loop_webhook_customer_to_slack_thread_and_back(
    svc: Service, slack: FakeSlackAPI, receiver: CallbackReceiver, fake_llm: FakeOpenAI
) -> None:
    ticket, thread = await escalate_webhook_customer(svc, slack)
    [notice] = await receiver.wait_for(1)
    assert notice["source"] == "template" and ticket in notice["text"]
    assert "support team" in notice["text"] and fake_llm.calls == 0

    [parent] = slack.posted(SUPPORT_CHANNEL)
    assert parent["channel"] == SUPPORT_CHANNEL and "thread_ts" not in parent
    shown = json.dumps(parent["blocks"])
    for expected in (ticket, "webhook", "u-1", "P1 high", "customer asked for a person"):
        assert expected in shown
    assert "I want to speak to a human agent" in shown  # the last turns
    buttons = [
        e["action_id"] for b in parent["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert buttons == ["takeover", "release", "resolve"]

    # While people have the conversation the bot does not answer; the message goes to the thread.
    assert (await svc.post("gw", message(2, "hello? <!channel>", user_id="u-1")))[0] == 202
    await slack.wait_for("chat.postMessage", 2)
    [forwarded] = slack.posted(SUPPORT_CHANNEL, thread_ts=thread)
    assert forwarded["text"] == "*Customer:* hello? &lt;!channel&gt;"  # escaped: no mention
    assert fake_llm.calls == 0 and len(receiver.accepted) == 1

    # A staff reply in the thread reaches the customer's gateway, once, even if Slack retries.
    event = thread_message("Hi, I am Anna &amp; I will check your order.", thread)
    body = event_body(event, "Ev100")
    assert (await to_slack_app(svc, "/slack/events", body))[0] == 200
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert (await to_slack_app(svc, "/slack/events", body, headers=retry))[0] == 200
    again = event_body(event, "Ev101")  # the same message under another event id
    assert (await to_slack_app(svc, "/slack/events", again))[0] == 200
    callbacks = await receiver.wait_for(2)
    await settle()
    assert len(receiver.accepted) == 2
    human = callbacks[1]
    assert (
        human["source"] == "human" and human["text"] == "Hi, I am Anna & I will check your order."
    )
    assert (human["conversation_id"], human["user_id"], human["message_id"]) == (
        "u-1",
        "u-1",
        "m-2",
    )
    assert human["reply_id"].startswith("H") and human["reply_id"] != notice["reply_id"]
    assert human["ticket_id"] == ticket

    # Writing took the conversation over: the parent shows the owner, the thread says so.
    [update] = await slack.wait_for("chat.update", 1)
    assert update.params["ts"] == thread and f"<@{STAFF_USER_ID}>" in update.params[
        "text"
    ] + json.dumps(update.params["blocks"])
    handover = await svc.runtime.desk.get(CUSTOMER)
    assert handover is not None and (handover.status, handover.owner) == (OWNED, STAFF_USER_ID)

    # Return to bot: automation resumes.
    status, _ = await to_slack_app(
        svc, "/slack/interactivity", action_body("release", CUSTOMER, message_ts=thread)
    )
    assert status == 200
    assert (await svc.post("gw", message(3, "Do you ship to Norway?", user_id="u-1")))[0] == 202
    answers = await receiver.wait_for(3)
    assert answers[2]["source"] == "llm" and answers[2]["text"] == "Echo: Do you ship to Norway?"
    # The bot knows what was said while people had the conversation.
    sent = fake_llm.requests[0].json["messages"]
    assert {"role": "user", "content": "hello? <!channel>"} in sent
    assert {"role": "assistant", "content": "Hi, I am Anna & I will check your order."} in sent
    handover = await svc.runtime.desk.get(CUSTOMER)
    assert handover is not None and handover.status == RETURNED


async def test_telegram_customer_gets_the_staff_reply_by_send_message(
    telegram_desk: TelegramDesk, fake_llm: FakeOpenAI, slack: FakeSlackAPI
) -> None:
    svc, telegram = telegram_desk.svc, telegram_desk.telegram
    await telegram_desk.customer_sends("/human")
    [notice] = await telegram.wait_for("sendMessage", 1)
    assert "support team" in notice.params["text"]
    [parent] = await slack.wait_for("chat.postMessage", 1)
    assert "telegram" in json.dumps(parent.params["blocks"])
    thread = first_ts(slack)
    assert (await staff_writes(svc, "Hello from the team!", thread))[0] == 200
    # Long staff replies are split; each is sent whole although they share a ticket.
    for n in (1, 2):
        long_reply = f"Reply {n}. " + "Here is what happened with your parcel. " * 150
        assert (await staff_writes(svc, long_reply, thread, event_id=f"Ev{n}"))[0] == 200
    sent = await telegram.wait_for("sendMessage", 6)
    assert sent[1].params["text"] == "Hello from the team!"
    assert int(sent[1].params["chat_id"]) == 42
    assert [c.params["text"][:8] for c in sent[2:6:2]] == ["Reply 1.", "Reply 2."]
    assert fake_llm.calls == 0


async def test_buttons_take_over_and_resolve(svc: Service, slack: FakeSlackAPI) -> None:
    _, thread = await escalate_webhook_customer(svc, slack)
    status, _ = await to_slack_app(
        svc, "/slack/interactivity", action_body("takeover", CUSTOMER, user_id="U0ANNA")
    )
    assert status == 200
    handover = await svc.runtime.desk.get(CUSTOMER)
    assert handover is not None and (handover.status, handover.owner) == (OWNED, "U0ANNA")
    [update] = await slack.wait_for("chat.update", 1)
    assert "<@U0ANNA>" in json.dumps(update.params["blocks"])
    await slack.wait_for("chat.postMessage", 2)  # the parent, then the note in its thread
    [note] = slack.posted(SUPPORT_CHANNEL, thread_ts=thread)
    assert "Taken over by <@U0ANNA>" in note["text"]

    await to_slack_app(svc, "/slack/interactivity", action_body("resolve", CUSTOMER))
    handover = await svc.runtime.desk.get(CUSTOMER)
    assert handover is not None and handover.status == RESOLVED
    updates = await slack.wait_for("chat.update", 2)
    resolved = updates[1].params["blocks"]
    assert not [b for b in resolved if b["type"] == "actions"]  # closed: no buttons left
    assert await svc.runtime.desk.open_count() == 0
    # A click on an expired hand-over is acknowledged and changes nothing.
    status, _ = await to_slack_app(
        svc, "/slack/interactivity", action_body("takeover", "webhook:gw:gone")
    )
    assert status == 200


async def test_staff_notes_and_other_channels_never_reach_the_customer(
    svc: Service, slack: FakeSlackAPI, receiver: CallbackReceiver
) -> None:
    _, thread = await escalate_webhook_customer(svc, slack)
    await receiver.wait_for(1)
    await staff_writes(svc, "// checking with the warehouse first", thread, event_id="Ev1")
    await staff_writes(svc, "hi", thread, event_id="Ev2", channel="C0OTHER")
    await staff_writes(svc, "hi", "999.000", event_id="Ev3")  # not a hand-over thread
    bot_post = thread_message("echo of our own post", thread) | {"bot_id": "B0BOT"}
    await to_slack_app(svc, "/slack/events", event_body(bot_post, "Ev4"))
    await settle()
    assert len(receiver.accepted) == 1
    handover = await svc.runtime.desk.get(CUSTOMER)
    assert handover is not None and handover.owner == ""


async def test_slash_command_stats_takeover_and_release(
    svc: Service, slack: FakeSlackAPI, receiver: CallbackReceiver
) -> None:
    ticket, _ = await escalate_webhook_customer(svc, slack)
    await receiver.wait_for(1)
    status, body = await to_slack_app(svc, "/slack/commands", command_body("stats"))
    answer = json.loads(body)
    assert status == 200 and answer["response_type"] == "ephemeral"
    for line in (
        "P0 urgent",
        "P1 high",
        "P2 normal",
        "p95 wait",
        "LLM calls",
        "Open hand-overs: 1",
    ):
        assert line in answer["text"]
    assert "Answered without the LLM today: 100% of 1" in answer["text"]

    status, body = await to_slack_app(
        svc, "/slack/commands", command_body(f"takeover {ticket.lower()}", user_id="U0BEN")
    )
    assert status == 200 and ticket in json.loads(body)["text"]
    handover = await svc.runtime.desk.get(CUSTOMER)
    assert handover is not None and handover.owner == "U0BEN"
    _, body = await to_slack_app(svc, "/slack/commands", command_body(f"release {ticket}"))
    assert "returned to the bot" in json.loads(body)["text"]
    _, body = await to_slack_app(svc, "/slack/commands", command_body("takeover T0NOPE"))
    assert "No conversation" in json.loads(body)["text"]
    _, body = await to_slack_app(svc, "/slack/commands", command_body("dance"))
    assert "Usage" in json.loads(body)["text"]


async def test_takeover_of_a_ticket_nobody_escalated_opens_a_hand_over(
    svc: Service, slack: FakeSlackAPI, receiver: CallbackReceiver
) -> None:
    _, body, _ = await svc.post("gw", message(1, "Do you ship to Norway?"))
    await receiver.wait_for(1)
    ticket = body["ticket_id"]
    _, answer = await to_slack_app(svc, "/slack/commands", command_body(f"takeover {ticket}"))
    assert "You own" in json.loads(answer)["text"]
    [parent] = await slack.wait_for("chat.postMessage", 1)
    shown = json.dumps(parent.params["blocks"])
    assert "opened by staff" in shown and "Do you ship to Norway?" in shown
    handover = await svc.runtime.desk.get(CUSTOMER)
    assert handover is not None and handover.status == OWNED


async def test_requests_without_a_valid_signature_are_refused(
    svc: Service, slack: FakeSlackAPI
) -> None:
    body = command_body("stats")
    assert (await to_slack_app(svc, "/slack/commands", body, secret="wrong"))[0] == 401
    stale = int(time.time()) - 6 * 60
    assert (await to_slack_app(svc, "/slack/commands", body, timestamp=stale))[0] == 401
    async with svc.client.post(svc.url("/slack/events"), data=b"{}") as unsigned:
        assert unsigned.status == 401
    challenge = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "x"})
    status, text = await to_slack_app(svc, "/slack/events", challenge)
    assert status == 200 and "c-123" in text
    async with svc.client.post(
        svc.url("/slack/events"), data=b"\xff\xfe", headers=signed_headers(SIGNING_SECRET, "")
    ) as garbage:
        assert garbage.status == 400
    assert slack.calls_to("chat.postMessage") == []


async def test_malformed_signatures_and_unsigned_junk_are_401_never_a_5xx(
    svc: Service, slack: FakeSlackAPI
) -> None:
    # Bolt parsed these before checking the signature, and raised on them (500 or 503).
    now = str(int(time.time()))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for signature in (
        {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=\u00e9"},
    ):
        headers = {**form, **signature}
        async with svc.client.post(
            svc.url("/slack/commands"), data=command_body("stats").encode(), headers=headers
        ) as response:
            assert response.status == 401 and (await response.json())["error"]
    for junk in (b"{", b"[1]", b'{"enterprise": 5}', b"payload=%5B1%5D"):
        async with svc.client.post(svc.url("/slack/events"), data=junk) as response:
            assert response.status == 401 and (await response.json())["error"]
    # Slack's certificate check stays answered without a signature, as Bolt does.
    async with svc.client.post(
        svc.url("/slack/commands"), data=b"ssl_check=1&token=x", headers=form
    ) as response:
        assert response.status == 200
    assert slack.calls_to("chat.postMessage") == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/slack/events", "{"),
        ("/slack/events", '{"type": "event_callback", "event": null}'),
        ("/slack/events", '{"type": "event_callback", "event": {"type": "message"}, "team": 5}'),
        ("/slack/commands", urlencode({"payload": "[1]"})),
        ("/slack/interactivity", urlencode({"payload": '{"type": "block_actions", "actions": 1}'})),
    ],
)
async def test_signed_bodies_that_are_no_slack_payload_are_400_without_a_retry(
    svc: Service, path: str, body: str
) -> None:
    status, text = await to_slack_app(svc, path, body)
    assert status == 400 and json.loads(text)["error"]


async def test_a_body_whose_content_encoding_does_not_decode_is_400(svc: Service) -> None:
    body = event_body(thread_message("hello", "1700000000.000100"), "Ev1")
    status, text = await to_slack_app(
        svc, "/slack/events", body, headers={"Content-Encoding": "gzip"}
    )  # not gzip: aiohttp's ContentEncodingError was a 500
    assert status == 400 and "cannot read body" in json.loads(text)["error"]


async def test_a_button_click_with_a_user_of_another_shape_still_acts(svc: Service) -> None:
    payload = json.loads(parse_qs(action_body(RESOLVE, "T-unknown"))["payload"][0])
    payload["user"] = STAFF_USER_ID  # an object in Slack's payloads: this raised (a 503)
    status, _ = await to_slack_app(
        svc, "/slack/interactivity", urlencode({"payload": json.dumps(payload)})
    )
    assert status == 200


async def test_a_request_that_cannot_be_stored_in_time_is_answered_503_for_a_retry(
    svc: Service, slack: FakeSlackAPI, monkeypatch: pytest.MonkeyPatch, receiver: CallbackReceiver
) -> None:
    _, thread = await escalate_webhook_customer(svc, slack)
    await receiver.wait_for(1)

    async def store_down(thread: str) -> str | None:
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(svc.runtime.desk, "find_by_thread", store_down)
    status, _ = await staff_writes(svc, "Hello", thread, event_id="Ev1")
    assert status == 503  # Slack delivers the event again later

    async def store_stuck(thread: str) -> str | None:
        await asyncio.sleep(10)
        return None

    monkeypatch.setattr(svc.runtime.desk, "find_by_thread", store_stuck)
    started = time.monotonic()
    status, _ = await staff_writes(svc, "Hello", thread, event_id="Ev2")
    assert status == 503 and time.monotonic() - started < 3.0  # inside Slack's 3 s
    monkeypatch.undo()
    assert (await staff_writes(svc, "Hello", thread, event_id="Ev3"))[0] == 200
    [_, staff] = await receiver.wait_for(2)
    assert staff["text"] == "Hello" and staff["source"] == "human"


async def test_a_rate_limited_post_waits_for_slack_and_is_sent_once(
    svc: Service, slack: FakeSlackAPI
) -> None:
    slack.fail("chat.postMessage", 429, retry_after=1)
    started = time.monotonic()
    status, _, _ = await svc.post("gw", message(1, "I want to speak to a human agent"))
    assert status == 202
    await slack.wait_for("chat.postMessage", 1)
    calls = slack.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.9  # Retry-After honoured
    assert time.monotonic() - started >= 0.9
    await settle()
    assert len(slack.posted(SUPPORT_CHANNEL)) == 1


async def test_complaints_and_answers_the_bot_cannot_give_go_to_people(
    svc: Service, slack: FakeSlackAPI, receiver: CallbackReceiver, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(json=_completion("I am sorry to hear that."))
    await svc.post("gw", message(1, "I want to file a complaint, your service is terrible"))
    await receiver.wait_for(1)  # one at a time: each gets its scripted answer
    fake_llm.script(json=_completion("I cannot help with warranty claims, sorry. [HANDOVER]"))
    await svc.post("gw", message(2, "Can you check the warranty of my blender?"))
    replies = await receiver.wait_for(2)
    await slack.wait_for("chat.postMessage", 2)
    by_user = {r["user_id"]: r for r in replies}
    assert by_user["u-1"]["text"].startswith("I am sorry to hear that.\n\nA member of our")
    assert "[handover]" not in by_user["u-2"]["text"].lower()
    assert by_user["u-2"]["source"] == "llm"
    reasons = {
        json.dumps(p["blocks"]) for p in slack.posted(SUPPORT_CHANNEL) if "thread_ts" not in p
    }
    assert any("complaint at priority 1" in r for r in reasons)
    assert any("the bot could not help" in r for r in reasons)


async def test_repeated_failed_answers_hand_the_conversation_over(
    svc: Service, slack: FakeSlackAPI, receiver: CallbackReceiver, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(status=400, error_code="invalid_request", times=2)
    await svc.post("gw", message(1, "Is the blender dishwasher safe?"))
    await receiver.wait_for(1)
    assert slack.calls_to("chat.postMessage") == []  # one failure: not yet
    await svc.post("gw", message(2, "Is the toaster dishwasher safe?", user_id="u-1"))
    replies = await receiver.wait_for(2)
    assert replies[1]["source"] == "fallback" and "A member of our" in replies[1]["text"]
    [parent] = await slack.wait_for("chat.postMessage", 1)
    assert "2 failed answers" in json.dumps(parent.params["blocks"])


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "deepseek-v3.2",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
    }


async def test_slash_command_peak_forces_the_mode_for_every_process(svc: Service) -> None:
    _, body = await to_slack_app(svc, "/slack/commands", command_body("peak on"))
    assert "on, level 2 (cheaper model)" in json.loads(body)["text"]
    assert await svc.runtime.redis.get(svc.runtime.keys.peak_mode) == "on"
    _, body = await to_slack_app(svc, "/slack/commands", command_body("stats"))
    assert "Peak mode: on, level 2" in json.loads(body)["text"]
    _, body = await to_slack_app(svc, "/slack/commands", command_body("peak AUTO"))
    # Back on auto the level comes down step by step, one per cool-down (30 s).
    assert "auto, level 2" in json.loads(body)["text"]
    _, body = await to_slack_app(svc, "/slack/commands", command_body("peak off"))
    assert "off, level 0 (normal)" in json.loads(body)["text"]
    _, body = await to_slack_app(svc, "/slack/commands", command_body("peak turbo"))
    assert "one of `auto`, `on`, `off`" in json.loads(body)["text"]
    assert await svc.runtime.redis.get(svc.runtime.keys.peak_mode) == "off"
