"""The fake Slack Web API (tests/fakes/slack_api.py) answers the real ``AsyncWebClient``
as Slack does."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    async_default_handlers,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import (
    BOT_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    SUPPORT_CHANNEL,
    FakeSlackAPI,
    action_body,
    command_body,
    event_body,
    signed_headers,
    thread_message,
)

BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Order* 12345"}}]


@pytest.fixture
async def api() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI() as fake:
        yield fake


@pytest.fixture
def client(api: FakeSlackAPI) -> AsyncWebClient:
    # Without a session of its own, the client opens and closes one per request.
    return AsyncWebClient(token=BOT_TOKEN, base_url=api.base_url)


async def test_auth_test_and_invalid_auth(api: FakeSlackAPI, client: AsyncWebClient) -> None:
    assert api.base_url.startswith("http://127.0.0.1:") and api.base_url.endswith("/api/")
    response = await client.auth_test()
    assert response["user_id"] == BOT_USER_ID and response["bot_id"] == BOT_ID

    wrong = AsyncWebClient(token="xoxb-wrong", base_url=api.base_url)
    with pytest.raises(SlackApiError) as caught:
        await wrong.auth_test()
    assert caught.value.response.status_code == 200
    assert caught.value.response["error"] == "invalid_auth"
    assert [(c.status, c.ok, c.error) for c in api.calls_to("auth.test")] == [
        (200, True, None),
        (200, False, "invalid_auth"),
    ]


async def test_post_message_ts_increase_and_threads_are_recorded(
    api: FakeSlackAPI, client: AsyncWebClient
) -> None:
    first = await client.chat_postMessage(channel=SUPPORT_CHANNEL, text="New ticket", blocks=BLOCKS)
    reply = await client.chat_postMessage(
        channel=SUPPORT_CHANNEL, text="Customer wrote again", thread_ts=first["ts"]
    )
    assert float(reply["ts"]) > float(first["ts"])
    assert reply["message"]["thread_ts"] == first["ts"]
    assert first["message"]["blocks"] == BLOCKS and first["message"]["bot_id"] == BOT_ID

    # A form-encoded post (blocks as a JSON string) is decoded the same way.
    await client.api_call(
        "chat.postMessage",
        data={"channel": "C0OTHER", "text": "form", "blocks": json.dumps(BLOCKS)},
    )
    assert [p["text"] for p in api.posted()] == ["New ticket", "Customer wrote again", "form"]
    assert api.posted("C0OTHER")[0]["blocks"] == BLOCKS
    assert [p["text"] for p in api.posted(SUPPORT_CHANNEL, thread_ts=first["ts"])] == [
        "Customer wrote again"
    ]

    with pytest.raises(SlackApiError) as caught:
        # api_call: chat_postMessage itself warns (an error here) about a missing text.
        await client.api_call("chat.postMessage", json={"channel": SUPPORT_CHANNEL})
    assert caught.value.response["error"] == "no_text"
    assert len(api.posted()) == 3 and len(api.calls_to("chat.postMessage")) == 4


async def test_update_ephemeral_and_unknown_method(
    api: FakeSlackAPI, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel=SUPPORT_CHANNEL, text="Handover requested")
    updated = await client.chat_update(channel=SUPPORT_CHANNEL, ts=posted["ts"], text="Taken")
    assert (updated["ts"], updated["text"]) == (posted["ts"], "Taken")
    assert api.updates() == [{"channel": SUPPORT_CHANNEL, "ts": posted["ts"], "text": "Taken"}]

    ephemeral = await client.chat_postEphemeral(
        channel=SUPPORT_CHANNEL, user="U0STAFF", text="Only you"
    )
    assert float(ephemeral["message_ts"]) > float(posted["ts"])

    with pytest.raises(SlackApiError) as caught:
        await client.api_call("reactions.add", json={"channel": SUPPORT_CHANNEL})
    assert caught.value.response["error"] == "unknown_method"


async def test_rate_limit_surfaces_as_slack_api_error_with_retry_after(
    api: FakeSlackAPI, client: AsyncWebClient
) -> None:
    # The default async client retries connection errors only, never a 429.
    assert not any(isinstance(h, AsyncRateLimitErrorRetryHandler) for h in client.retry_handlers)
    assert len(async_default_handlers()) == 1

    api.fail("chat.postMessage", 429, retry_after=7)
    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel=SUPPORT_CHANNEL, text="hello")
    response = caught.value.response
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"  # aiohttp's case-insensitive headers
    assert response["error"] == "ratelimited"

    api.fail("chat.postMessage", 500, skip=1)
    api.fail("chat.postMessage", 200, error="channel_not_found")
    await client.chat_postMessage(channel=SUPPORT_CHANNEL, text="skipped: answered normally")
    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel=SUPPORT_CHANNEL, text="hello")
    assert (caught.value.response.status_code, caught.value.response["error"]) == (
        500,
        "internal_error",
    )
    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel=SUPPORT_CHANNEL, text="hello")
    assert caught.value.response["error"] == "channel_not_found"
    assert [c.status for c in api.calls_to("chat.postMessage")] == [429, 200, 500, 200]
    assert [c.ok for c in api.calls_to("chat.postMessage")] == [False, True, False, False]


async def test_wait_for_and_delay(api: FakeSlackAPI, client: AsyncWebClient) -> None:
    api.fail("chat.postMessage", 500, delay=0.1)
    send = asyncio.create_task(client.chat_postMessage(channel=SUPPORT_CHANNEL, text="slow"))
    with pytest.raises(SlackApiError):
        await send
    later = asyncio.create_task(client.chat_postMessage(channel=SUPPORT_CHANNEL, text="ok"))
    [call] = await api.wait_for("chat.postMessage", 1, timeout=5)
    assert call.params["text"] == "ok"
    await later
    with pytest.raises(TimeoutError):
        await api.wait_for("chat.postMessage", 2, timeout=0.05)


def test_signed_headers_are_accepted_and_bodies_are_real_shaped() -> None:
    verifier = SignatureVerifier(SIGNING_SECRET)
    event = thread_message("I will take it", thread_ts="1700000000.000100")
    body = event_body(event, "Ev0001")
    assert verifier.is_valid_request(body, signed_headers(SIGNING_SECRET, body))
    assert not verifier.is_valid_request(body, signed_headers("another-secret", body))
    stale = signed_headers(SIGNING_SECRET, body, timestamp=int(time.time()) - 600)
    assert not verifier.is_valid_request(body, stale)

    envelope = json.loads(body)
    assert envelope["type"] == "event_callback" and envelope["event_id"] == "Ev0001"
    assert envelope["event"]["thread_ts"] == "1700000000.000100"
    assert envelope["event"]["ts"] == envelope["event"]["event_ts"] != "1700000000.000100"

    command = parse_qs(command_body("status 12345"))
    assert command["command"] == ["/peakdesk"] and command["text"] == ["status 12345"]
    assert command["channel_id"] == [SUPPORT_CHANNEL]

    payload = json.loads(parse_qs(action_body("take", "ticket-1"))["payload"][0])
    assert payload["type"] == "block_actions" and payload["container"]["message_ts"] == "1.0"
    [action] = payload["actions"]
    assert (action["action_id"], action["value"], action["block_id"]) == (
        "take",
        "ticket-1",
        "handover",
    )
