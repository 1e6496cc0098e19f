"""ReplyHandler and ConversationState: what goes to the model, what is remembered, the cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.handler import FLIGHT_TTL_S, ReplyHandler
from core.keys import Keys
from core.llm import HolySheepClient
from core.metrics import Metrics
from core.models import InboundMessage, MessageMetadata, QueuedMessage, Reply, ReplySource
from core.state import ConversationState, normalise_text
from tests.fakes.openai_server import FakeOpenAI, completion_body


def entry(n: int, text: str, conversation: str = "c1", **meta: object) -> QueuedMessage:
    message = InboundMessage(
        channel="webhook",
        account="gw",
        message_id=f"m{n}",
        user_id="u1",
        conversation_id=conversation,
        text=text,
        metadata=MessageMetadata(**meta),  # type: ignore[arg-type]
    )
    return QueuedMessage(
        entry_id=f"{n}-0", priority=2, ticket_id=f"T{n}", message=message, enqueued_at=0.0
    )


async def answer(handler: ReplyHandler, queued: QueuedMessage) -> Reply:
    """The handler's reply (these conversations are never with people)."""
    reply = await handler.answer(queued)
    assert reply is not None
    return reply


@pytest.fixture
async def llm(fake_llm: FakeOpenAI) -> AsyncIterator[HolySheepClient]:
    client = HolySheepClient(api_key="sk-test", base_url=fake_llm.base_url, backoff_base=0.01)
    yield client
    await client.aclose()


@pytest.fixture
def state(redis: Redis, keys: Keys) -> ConversationState:
    return ConversationState(redis, keys, history_turns=2, history_ttl_s=600)


def test_normalise_text_lowercases_trims_and_collapses_whitespace() -> None:
    assert normalise_text("  Where IS\tmy\n\n order?  ") == "where is my order?"


async def test_history_keeps_the_last_turns_with_a_ttl(
    state: ConversationState, redis: Redis, keys: Keys
) -> None:
    for n in range(5):
        await state.record_turn(
            "webhook:gw:c1",
            [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}],
        )
    history = await state.history("webhook:gw:c1")
    assert [t["content"] for t in history] == ["q3", "a3", "q4", "a4"]
    assert 0 < await redis.ttl(keys.history("webhook:gw:c1")) <= 600
    await state.forget("webhook:gw:c1")
    assert await state.history("webhook:gw:c1") == []


async def test_answer_sends_system_history_product_context_then_text(
    state: ConversationState, llm: HolySheepClient, fake_llm: FakeOpenAI
) -> None:
    handler = ReplyHandler(llm, state, Metrics(), system_prompt="SYSTEM")
    await state.put_product("p-9", {"name": "Trail shoe", "price": 89.0})
    first = entry(1, "hello")
    await handler.remember(first, await answer(handler, first))
    second = entry(2, "is it waterproof?", product_id="p-9", order_id="A-77", vip=True)
    reply = await answer(handler, second)
    assert reply.source is ReplySource.LLM and reply.text == "Echo: is it waterproof?"
    sent = fake_llm.requests[1].json["messages"]
    assert sent[0] == {"role": "system", "content": "SYSTEM"}
    assert sent[1:3] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Echo: hello"},
    ]
    assert "Trail shoe" in sent[3]["content"]
    assert "A-77" in sent[4]["content"] and "VIP" in sent[4]["content"]
    assert sent[5] == {"role": "user", "content": "is it waterproof?"}


async def test_a_message_processed_again_hits_the_cache_not_the_llm(
    state: ConversationState, llm: HolySheepClient, fake_llm: FakeOpenAI
) -> None:
    handler = ReplyHandler(llm, state, Metrics())
    message = entry(1, "Do you ship to Norway?")
    first = await answer(handler, message)
    again = await answer(handler, message)  # e.g. after a crash before the reply was stored
    assert (first.source, again.source) == (ReplySource.LLM, ReplySource.CACHE)
    assert again.text == first.text and fake_llm.calls == 1


async def test_the_cache_never_answers_a_conversation_that_moved_on(
    state: ConversationState, llm: HolySheepClient, fake_llm: FakeOpenAI
) -> None:
    handler = ReplyHandler(llm, state, Metrics())
    first = entry(1, "thanks")
    await handler.remember(first, await answer(handler, first))
    later = await answer(handler, entry(2, "  THANKS "))  # same normalised text, new history
    assert later.source is ReplySource.LLM
    assert fake_llm.calls == 2


async def test_identical_context_free_questions_share_one_answer_personal_ones_never(
    state: ConversationState, llm: HolySheepClient, fake_llm: FakeOpenAI
) -> None:
    handler = ReplyHandler(llm, state, Metrics())
    first = await answer(handler, entry(1, "Do you ship to Norway?"))
    other = await answer(handler, entry(2, " do you SHIP to norway? ", conversation="c2"))
    assert (first.source, other.source) == (ReplySource.LLM, ReplySource.CACHE)
    assert other.text == first.text and fake_llm.calls == 1
    # A VIP's context, a named order, another language: an answer of their own.
    vip = await answer(handler, entry(3, "Do you ship to Norway?", conversation="c3", vip=True))
    order = await answer(handler, entry(4, "Do you ship order 12345 to Norway?", conversation="c4"))
    zh = await answer(handler, entry(5, "Do you ship to Norway?", conversation="c5", locale="zh"))
    assert {vip.source, order.source, zh.source} == {ReplySource.LLM}
    assert fake_llm.calls == 4


async def test_identical_questions_arriving_together_make_one_llm_call(
    state: ConversationState, llm: HolySheepClient, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(json=completion_body("Yes, we ship to Norway."), delay=0.3)
    handlers = [ReplyHandler(llm, state, Metrics()) for _ in range(2)]  # two processes
    replies = await asyncio.gather(
        *(
            answer(handlers[n % 2], entry(n, "Do you ship to Norway?", conversation=f"c{n}"))
            for n in range(6)
        )
    )
    assert fake_llm.calls == 1
    assert {r.text for r in replies} == {"Yes, we ship to Norway."}
    assert sorted(r.source.value for r in replies) == ["cache"] * 5 + ["llm"]


async def test_the_leader_of_a_shared_question_answers_even_if_a_follower_wakes_first(
    redis: Redis, keys: Keys, llm: HolySheepClient, fake_llm: FakeOpenAI
) -> None:
    # Found by a flaky worker test: the follower's lookup reply was read before the leader's,
    # the follower registered the flight of this process first, and the leader waited for it,
    # so neither answered until the flight lapsed (FLIGHT_TTL_S).
    class LeaderWakesLast(ConversationState):
        async def lookup(
            self, digest: str, shared: str | None, flight_ttl_s: int
        ) -> tuple[str, str | None]:
            found = await super().lookup(digest, shared, flight_ttl_s)
            if found[0] == "lead":
                await asyncio.sleep(0.3)
            return found

    handler = ReplyHandler(llm, LeaderWakesLast(redis, keys), Metrics())
    started = time.monotonic()
    replies = await asyncio.gather(
        *(answer(handler, entry(n, "Do you ship to Norway?", f"c{n}")) for n in range(2))
    )
    assert time.monotonic() - started < FLIGHT_TTL_S / 2
    assert fake_llm.calls == 1 and replies[0].text == replies[1].text


async def test_llm_failure_becomes_an_apology_with_ticket_and_code(
    state: ConversationState, llm: HolySheepClient, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(status=403, error_code="forbidden")
    handler = ReplyHandler(llm, state, Metrics())
    message = entry(1, "hi", locale="zh-CN")
    reply = await answer(handler, message)
    assert reply.source is ReplySource.FALLBACK and reply.error_code == "forbidden"
    assert "T1" in reply.text and "forbidden" in reply.text and "工单号" in reply.text
    await handler.remember(message, reply)
    conversation = message.message.conversation_key
    assert await state.history(conversation) == [{"role": "user", "content": "hi"}]


async def test_product_and_policy_caches_expire_after_the_catalogue_ttl(
    redis: Redis, keys: Keys
) -> None:
    state = ConversationState(redis, keys, catalogue_ttl_s=86_400)
    await state.put_product("p-1", {"name": "Mug"})
    await state.put_policy("returns", "30 days")
    assert (await state.load("webhook:gw:c1", "p-1")).product == {"name": "Mug"}
    assert await state.policy("returns") == "30 days"
    for key in (keys.product("p-1"), keys.policy("returns")):
        assert 86_000 < await redis.ttl(key) <= 86_400
