"""Flood limits, from outside: one sender over its limit gets one polite notice and takes no
more of the LLM; a gateway over its own limit is asked to come back later (429)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Service, message, wired_settings


def from_user(n: int, user: str) -> dict[str, object]:
    """Message ``n`` of ``user``, a question of its own (no cached answer to share)."""
    return message(n, f"do you ship parcel {n} to Canada?", user_id=user, conversation_id=user)


async def test_sender_over_the_limit_gets_one_notice_and_no_more_llm_calls(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = wired_settings(
        keys, fake_llm.base_url, receiver.url, peakdesk_flood_limit=3, peakdesk_flood_window_s=60
    )
    async with Service(settings, redis) as svc:
        answers = [await svc.post("gw", from_user(n, "flooder")) for n in range(6)]
        other_status, other, _ = await svc.post("gw", from_user(99, "calm"))
        retry_status, retry, _ = await svc.post("gw", from_user(3, "flooder"))
        callbacks = await receiver.wait_for(5)
        await asyncio.sleep(0.3)  # nothing more may come
        async with svc.client.get(svc.url("/metrics")) as response:
            metrics = await response.text()

    statuses = [
        (status, body["status"], body.get("notice"), body.get("reason"))
        for status, body, _ in answers
    ]
    assert statuses == [
        *[(202, "queued", None, None)] * 3,
        (202, "throttled", True, "sender"),
        (202, "throttled", False, "sender"),
        (202, "throttled", False, "sender"),
    ]
    assert (other_status, other["status"]) == (202, "queued")  # other senders are not affected
    # A gateway's retry of the throttled message gets its ticket, not a second notice.
    first_throttled = answers[3][1]["ticket_id"]
    assert (retry_status, retry) == (200, {"status": "duplicate", "ticket_id": first_throttled})
    assert fake_llm.calls == 4  # the flooder's first three and the calm customer's one

    assert len(receiver.received) == 5
    [notice] = [c for c in callbacks if c["source"] == "notice"]
    assert notice["message_id"] == "m-3" and notice["user_id"] == "flooder"
    assert notice["reply_id"] == notice["ticket_id"] == answers[3][1]["ticket_id"]
    assert "faster than we can read" in notice["text"] and notice["ticket_id"] in notice["text"]
    answered = sorted(c["message_id"] for c in callbacks if c["source"] == "llm")
    assert answered == ["m-0", "m-1", "m-2", "m-99"]
    assert 'peakdesk_messages_throttled_total{channel="webhook"} 3.0' in metrics


async def test_sender_is_read_again_once_the_limit_allows(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    # 2 a second: a burst of 2, then one every half second.
    settings = wired_settings(
        keys, fake_llm.base_url, receiver.url, peakdesk_flood_limit=2, peakdesk_flood_window_s=1
    )
    async with Service(settings, redis) as svc:
        first = [(await svc.post("gw", from_user(n, "fast")))[1]["status"] for n in range(3)]
        await asyncio.sleep(0.6)
        later = (await svc.post("gw", from_user(3, "fast")))[1]["status"]
    assert first == ["queued", "queued", "throttled"]
    assert later == "queued"


async def test_no_flood_limit_when_it_is_zero(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = wired_settings(keys, fake_llm.base_url, receiver.url, peakdesk_flood_limit=0)
    async with Service(settings, redis) as svc:
        statuses = {(await svc.post("gw", from_user(n, "busy")))[1]["status"] for n in range(30)}
    assert statuses == {"queued"}


async def test_gateway_over_its_limit_gets_429_and_nothing_is_stored(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = wired_settings(
        keys,
        fake_llm.base_url,
        receiver.url,
        peakdesk_gateway_limit=6000,  # 100 a second for every gateway...
        peakdesk_gateway_limits={"small": 60},  # ...but one a second for this one
    )
    async with Service(settings, redis) as svc:
        ok, _, _ = await svc.post("small", from_user(1, "a"))
        status, body, headers = await svc.post("small", from_user(2, "b"))
        others = [(await svc.post("big", from_user(n, f"c{n}")))[0] for n in range(3, 8)]
        await receiver.wait_for(6)
        await asyncio.sleep(0.2)
        # The refused message was not stored: sent again later, it is queued, not a duplicate.
        await asyncio.sleep(float(headers["Retry-After"]))
        again, again_body, _ = await svc.post("small", from_user(2, "b"))
        callbacks = await receiver.wait_for(7)
    assert ok == 202
    assert status == 429 and "60 messages a minute" in body["error"]
    assert int(headers["Retry-After"]) >= 1
    assert others == [202] * 5
    assert (again, again_body["status"]) == (202, "queued")
    assert sorted(c["message_id"] for c in callbacks) == [f"m-{n}" for n in range(1, 8)]
