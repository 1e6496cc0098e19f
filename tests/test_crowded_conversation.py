"""One crowded conversation must not hold up everybody else (issue 14, finding 6), end to end
over HTTP: its messages wait for their turns without taking the worker's read budget, and
what one conversation may have queued and unanswered is capped."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Service, message, wired_settings

ROOM = 100  # messages from as many members into one group conversation
CUSTOMERS = 30  # ordinary customers afterwards, each in a conversation of their own
RATE = 3.0  # of them a second
NORMAL_S = 5.0  # an ordinary answer: the burst window, a 1 s LLM call, some slack


def room_message(n: int) -> dict[str, object]:
    return message(
        f"room-{n}",
        f"member {n} asks about parcel {n}",
        user_id=f"member-{n}",
        conversation_id="room",
        metadata={"group": True},
    )


async def test_a_crowded_group_conversation_does_not_hold_up_other_customers(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    fake_llm.latency = 1.0
    settings = wired_settings(
        keys,
        fake_llm.base_url,
        receiver.url,
        peakdesk_max_concurrent=5,
        peakdesk_burst_window_s=1.5,  # the production default: bursts are merged
    )
    async with Service(settings, redis) as svc:
        for n in range(ROOM):
            status, _, _ = await svc.post("gw", room_message(n))
            assert status == 202
        sent: dict[str, float] = {}
        for n in range(CUSTOMERS):
            payload = message(f"c{n}", f"where is my parcel number {n}?", user_id=f"customer-{n}")
            status, body, _ = await svc.post("gw", payload)
            assert status == 202 and body["status"] == "queued"
            sent[payload["message_id"]] = time.monotonic()
            await asyncio.sleep(1 / RATE)
        deadline = max(sent.values()) + NORMAL_S
        while time.monotonic() < deadline and sent.keys() - answered_at(receiver).keys():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        answers = answered_at(receiver)
        for worker in svc.runtime.workers:  # the room's turns left are not this test's business
            worker.shutdown_grace_s = 0.1

    waits = {m: answers[m] - at for m, at in sent.items() if m in answers}
    late = sorted(m for m in sent if waits.get(m, NORMAL_S + 1) > NORMAL_S)
    assert not late, (
        f"{len(late)} of {CUSTOMERS} ordinary customers not answered within {NORMAL_S} s"
        f" (answered: {len(waits)}, slowest {max(waits.values(), default=0):.1f} s)"
    )


def answered_at(receiver: CallbackReceiver) -> dict[str, float]:
    """When each message's full answer arrived (acknowledgements left out)."""
    return {
        m: c.at
        for c in receiver.received
        if c.body.get("source") != "ack" and c.body.get("_status", 200) < 300
        for m in c.body["message_ids"]
    }


async def test_a_conversation_over_its_limit_gets_one_notice_and_is_not_queued_until_answered(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    release = asyncio.Event()

    async def held_back(payload: dict[str, Any]) -> str:
        await release.wait()
        return "answer: " + str(payload["messages"][-1]["content"])

    fake_llm.responder = held_back
    settings = wired_settings(keys, fake_llm.base_url, receiver.url, peakdesk_conversation_limit=3)
    async with Service(settings, redis) as svc:
        answers = [(await svc.post("gw", room_message(n)))[1] for n in range(5)]
        _, again, _ = await svc.post("gw", room_message(3))  # a gateway sending it again
        _, elsewhere, _ = await svc.post("gw", message("other", "and my parcel 7?"))
        [notice] = await receiver.wait_for(1)
        release.set()
        await receiver.wait_for(5)  # the notice, the room's three answers, the other one
        _, later, _ = await svc.post("gw", room_message(5))
        await receiver.wait_for(6)

    assert [a["status"] for a in answers] == ["queued"] * 3 + ["throttled"] * 2
    assert [(a["notice"], a["reason"]) for a in answers[3:]] == [
        (True, "conversation"),
        (False, "conversation"),
    ]
    assert again == {"status": "duplicate", "ticket_id": answers[3]["ticket_id"]}
    assert elsewhere["status"] == "queued"  # other conversations are not concerned
    assert notice["source"] == "notice" and notice["message_id"] == "m-room-3"
    assert notice["ticket_id"] == answers[3]["ticket_id"] in notice["text"]
    assert notice["text"].startswith("Many messages in this conversation are waiting")
    assert later["status"] == "queued"  # answered messages no longer count
    answered = {i for c in receiver.accepted if c["source"] == "llm" for i in c["message_ids"]}
    assert answered == {"m-room-0", "m-room-1", "m-room-2", "m-other", "m-room-5"}
