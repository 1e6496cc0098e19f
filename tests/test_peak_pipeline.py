"""Peak mode end to end: acknowledgements under a backlog, then every full answer, once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Service, message, wired_settings


async def test_a_backlog_gets_acknowledgements_first_and_every_full_answer_later(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    async def slow(payload: dict[str, Any]) -> str:
        await asyncio.sleep(0.2)
        return "answer: " + payload["messages"][-1]["content"]

    fake_llm.responder = slow
    settings = wired_settings(
        keys,
        fake_llm.base_url,
        receiver.url,
        peakdesk_first_response_s=1.0,
        peakdesk_max_concurrent=2,
    )
    async with Service(settings, redis) as svc:
        tickets = {}
        for n in range(16):  # 16 messages, 10 answers a second at most: a backlog
            _, body, _ = await svc.post("gw", message(n, f"question number {n}"))
            tickets[f"m-{n}"] = body["ticket_id"]
        _, second, _ = await svc.post(
            "gw", {**message("again", "me again"), "user_id": "u-15", "message_id": "m-15b"}
        )
        tickets["m-15b"] = second["ticket_id"]
        async with asyncio.timeout(30):
            while len([c for c in receiver.accepted if c["source"] != "ack"]) < 17:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # nothing more arrives
        callbacks = receiver.accepted
        estimated = svc.runtime.peak.estimated_wait(2)
        counted = sum(svc.runtime.metrics.acks.labels(str(p))._value.get() for p in (0, 1, 2))

    acks = [c for c in callbacks if c["source"] == "ack"]
    answers = [c for c in callbacks if c["source"] != "ack"]
    assert acks, f"no acknowledgement (estimated wait {estimated})"
    assert counted == len(acks)
    for ack in acks:
        assert ack["reply_id"] == "A" + ack["ticket_id"]
        assert ack["ticket_id"] in ack["text"] and "expect to answer within" in ack["text"]
    # One acknowledgement per conversation while its answer is pending.
    assert max(Counter(a["conversation_id"] for a in acks).values()) == 1
    # Every message gets its one full answer, after its acknowledgement.
    assert sorted(a["message_id"] for a in answers) == sorted(tickets)
    for ack in acks:
        order = [c["source"] for c in callbacks if c["message_id"] == ack["message_id"]]
        assert order == ["ack", "llm"]
