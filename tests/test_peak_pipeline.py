"""Peak mode end to end: acknowledgements under a backlog, then every full answer, once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from bots.settings import Settings
from core.keys import Keys
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import Service, message, wired_settings


def backlogged(
    keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver, delay: float, **extra: Any
) -> Settings:
    """Settings where a few messages make a backlog: 2 answers at a time, each ``delay``
    seconds, and acknowledgements past 1 s."""

    async def slow(payload: dict[str, Any]) -> str:
        await asyncio.sleep(delay)
        return "answer: " + str(payload["messages"][-1]["content"])

    fake_llm.responder = slow
    return wired_settings(
        keys,
        fake_llm.base_url,
        receiver.url,
        peakdesk_first_response_s=1.0,
        peakdesk_max_concurrent=2,
        **extra,
    )


def answered(receiver: CallbackReceiver) -> set[str]:
    """The message ids the full answers received so far cover."""
    return {i for c in receiver.accepted if c["source"] != "ack" for i in c["message_ids"]}


async def test_a_backlog_gets_acknowledgements_first_and_every_full_answer_later(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = backlogged(keys, fake_llm, receiver, 0.2)
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
        assert ack["reply_id"] == "A" + ack["ticket_id"] and ack["ticket_id"] in ack["text"]
    # The full notice once per conversation while its answer is pending; after that, for
    # another message of the conversation, the short one.
    full = [a for a in acks if "expect to answer within" in a["text"]]
    short = [a for a in acks if "along with your earlier message" in a["text"]]
    assert len(full) + len(short) == len(acks)
    assert max(Counter(a["conversation_id"] for a in full).values()) == 1
    assert {a["message_id"] for a in short} <= {"m-15b"}  # the only second message
    assert {a["conversation_id"] for a in short} <= {a["conversation_id"] for a in full}
    # Every message gets its one full answer, after its acknowledgement.
    assert sorted(a["message_id"] for a in answers) == sorted(tickets)
    for ack in acks:
        order = [c["source"] for c in callbacks if c["message_id"] == ack["message_id"]]
        assert order == ["ack", "llm"]


async def test_under_a_backlog_a_templated_answer_goes_out_at_once_unless_it_would_overtake(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    settings = backlogged(keys, fake_llm, receiver, 0.3, peakdesk_burst_window_s=0.1)
    question = "what payment methods do you accept?"
    async with Service(settings, redis) as svc:
        for n in range(12):
            await svc.post("gw", message(n, f"question number {n}"))
        _, instant, _ = await svc.post("gw", message("new", question))
        _, waiting, _ = await svc.post(  # u-0 has a message queued: this one must wait
            "gw", {**message("later", question), "user_id": "u-0", "message_id": "m-0b"}
        )
        async with asyncio.timeout(30):
            while len(answered(receiver)) < 14:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        history = await svc.runtime.state.history("webhook:gw:u-new")

    answers = [c for c in receiver.accepted if c["source"] != "ack"]
    assert instant["status"] == waiting["status"] == "queued"
    first = answers[0]
    assert first["message_id"] == "m-new" and first["source"] == "template"
    assert first["ticket_id"] == instant["ticket_id"] and "Payment methods" in first["text"]
    assert [t["role"] for t in history] == ["user", "assistant"]  # the turn is remembered

    def covering(message_id: str) -> int:
        return next(i for i, c in enumerate(answers) if message_id in c["message_ids"])

    assert covering("m-0b") >= covering("m-0")  # no overtaking within a conversation
    assert answers[covering("m-0b")]["source"] == "llm"


async def test_answers_given_at_admission_count_against_the_senders_flood_limit(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI, receiver: CallbackReceiver
) -> None:
    # Level 4 acknowledges every priority-2 message, so a question a template answers is
    # answered at admission (core.templates.InstantAnswers); a window of an hour keeps the
    # limit at exactly 20 however slowly the test runs.
    settings = wired_settings(
        keys,
        fake_llm.base_url,
        receiver.url,
        peakdesk_peak_mode="4",
        peakdesk_burst_window_s=0.1,
        peakdesk_flood_limit=20,
        peakdesk_flood_window_s=3600,
    )
    question = "what payment methods do you accept?"
    async with Service(settings, redis) as svc:
        answers = [
            (await svc.post("gw", message(n, question, user_id="flooder")))[1] for n in range(100)
        ]
        await receiver.wait_for(21)
        await asyncio.sleep(0.3)  # nothing more may come

    sources = Counter(c["source"] for c in receiver.accepted)
    assert sources == {"template": 20, "notice": 1}, sources
    assert [a["status"] for a in answers] == ["queued"] * 20 + ["throttled"] * 80
    assert [a["notice"] for a in answers[20:]] == [True] + [False] * 79
    assert fake_llm.calls == 0
