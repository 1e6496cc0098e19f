"""Peak mode: estimated waits, acknowledgements, the ladder and what each level changes."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from adapters.store.demo import DemoShop
from core.circuit import CircuitBreaker
from core.handler import ReplyHandler
from core.keys import Keys
from core.ledger import utc_day
from core.llm import HolySheepClient
from core.metrics import Metrics
from core.models import InboundMessage, QueuedMessage, Reply, ReplySource
from core.peak import Budget, PeakMonitor, describe_wait, level_for
from core.queue import PriorityQueue
from core.state import ConversationState
from core.templates import TemplateAnswers
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import inbound


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def drained(redis: Redis, keys: Keys, priority: int, count: int) -> None:
    """Count ``count`` more entries of ``priority`` answered today, as the queue does."""
    await redis.hincrby(keys.stats_day(utc_day()), f"drained:{priority}", count)


async def queued(redis: Redis, keys: Keys, priority: int, count: int) -> None:
    for _ in range(count):
        await redis.xadd(keys.stream(priority), {"t": "T", "m": "{}", "e": "0", "w": "0"})


def test_waits_are_described_rounded_up_in_the_customers_language() -> None:
    assert describe_wait(20, None) == "1 minute"
    assert describe_wait(61, "en") == "2 minutes"
    assert describe_wait(17 * 60, "en") == "20 minutes"
    assert describe_wait(3 * 3600 - 5, "en") == "3 hours"
    assert describe_wait(300, "zh-CN") == "5 分钟"


def test_levels_follow_pressure_and_the_spent_budget() -> None:
    assert level_for(0.1, 0.0) == 0
    assert level_for(0.3, 0.0) == 1
    assert level_for(0.7, 0.0) == 2
    assert level_for(1.2, 0.0) == 3
    assert level_for(9.0, 0.0) == 4
    assert level_for(0.0, 0.85) == 2
    assert level_for(0.0, 0.97) == 3
    assert Budget(1000, 10_000).spent_share(500, 9_000) == 0.9
    assert Budget().spent_share(10**9, 10**9) == 0.0


async def test_the_wait_is_the_queue_ahead_over_the_rate_left_by_urgent_arrivals(
    redis: Redis, keys: Keys
) -> None:
    clock = Clock()
    monitor = PeakMonitor(redis, keys, slots=10, clock=clock, burst_window_s=1.5)
    monitor.record_latency(1.0)  # how long this process's answers take
    await monitor.refresh()
    assert monitor.estimated_wait(2) == 2.5  # idle: the burst window and the answer
    await queued(redis, keys, 0, 5)
    await queued(redis, keys, 2, 95)
    await monitor.refresh()
    assert math.isinf(monitor.estimated_wait(2))  # a backlog and no rate measured yet
    assert monitor.estimated_wait(0) == 2.5  # the urgent ones fit the slots
    clock.now += 1
    await drained(redis, keys, 0, 5)  # 5 urgent answered, and 5 more arrived meanwhile
    await drained(redis, keys, 2, 5)
    await queued(redis, keys, 2, 5)
    await monitor.refresh()
    # Smoothed: 40% of the last second's rates. Priority 0: 2/s out, 2/s in; priority 2:
    # 2/s out, 4/s in.
    assert monitor.drain == {0: 2.0, 1: 0.0, 2: 2.0}
    assert monitor.arrivals == {0: 2.0, 1: 0.0, 2: 4.0}
    assert monitor.estimated_wait(0) == pytest.approx(1.5 + 5 / 4 + 1.0)
    # 105 ahead, and the urgent arrivals take 2 of the 4 answers a second.
    assert monitor.estimated_wait(2) == pytest.approx(1.5 + 105 / 2 + 1.0)


async def test_acknowledgements_only_when_the_answer_will_take_longer_than_promised(
    redis: Redis, keys: Keys
) -> None:
    clock = Clock()
    monitor = PeakMonitor(redis, keys, first_response_s=5, slots=10, clock=clock)
    monitor.record_latency(1.0)
    await monitor.refresh()
    await queued(redis, keys, 0, 4)
    await queued(redis, keys, 2, 60)
    await monitor.refresh()
    clock.now += 1
    await drained(redis, keys, 2, 25)  # 10 a second, smoothed
    await monitor.refresh()
    assert monitor.acknowledgement(0, None) is None  # 0.4 s + 1 s
    ack = monitor.acknowledgement(2, None)  # 6.4 s + 1 s
    assert ack is not None and "{ticket}" in ack and "1 minute" in ack
    zh = monitor.acknowledgement(2, "zh")
    assert zh is not None and "工单号 {ticket}" in zh
    assert PeakMonitor(redis, keys, first_response_s=0).acknowledgement(2, None) is None


async def test_the_ladder_climbs_at_once_and_comes_down_one_step_per_cool_down(
    redis: Redis, keys: Keys
) -> None:
    clock = Clock()
    metrics = Metrics()
    monitor = PeakMonitor(
        redis,
        keys,
        slots=10,
        clock=clock,
        cool_down_s=30,
        targets_s=(30, 120, 600),
        metrics=metrics,
    )
    monitor.record_latency(1.0)
    await monitor.refresh()
    await queued(redis, keys, 0, 600)
    await monitor.refresh()
    clock.now += 1
    await drained(redis, keys, 0, 50)  # 20 a second, smoothed, and as many arriving
    await monitor.refresh()
    # Priority 0 waits its whole target; the others get a tenth of the answers: the top.
    assert metrics.estimated_wait.labels("0")._value.get() == pytest.approx(31.0)
    assert monitor.level == 4
    assert metrics.peak_level._value.get() == 4
    await redis.delete(keys.stream(0))
    for _ in range(3):  # calm now, but the level holds for the cool-down
        clock.now += 10
        await monitor.refresh()
    assert monitor.level == 4
    clock.now += 30
    await monitor.refresh()
    assert monitor.level == 3
    clock.now += 30
    await monitor.refresh()
    assert monitor.level == 2


async def test_staff_force_the_mode_for_every_process(redis: Redis, keys: Keys) -> None:
    mine = PeakMonitor(redis, keys)
    other = PeakMonitor(redis, keys)  # another process, same Redis
    await mine.force("on")
    await other.refresh()
    assert other.effective_mode == "on" and other.level == 2
    await mine.force("4")
    await other.refresh()
    assert other.level == 4
    await mine.force("off")
    await other.refresh()
    assert other.level == 0 and "off, level 0 (normal)" in other.summary()
    with pytest.raises(ValueError):
        await mine.force("turbo")


async def test_a_spent_budget_raises_the_level_and_stops_llm_calls(
    redis: Redis, keys: Keys
) -> None:
    monitor = PeakMonitor(redis, keys, budget=Budget(tokens_per_hour=1000))
    hour = f"h{int(time.time() // 3600)}"
    await redis.set(keys.budget(hour), 850)
    await monitor.refresh()
    assert monitor.level == 2 and not monitor.budget_exhausted
    await redis.set(keys.budget(hour), 1000)
    await monitor.refresh()
    assert monitor.level == 3 and monitor.budget_exhausted


# -- what the levels change in the handler ---------------------------------------------------


def entry(text: str, priority: int = 2, n: int = 1) -> QueuedMessage:
    message = InboundMessage(
        channel="webhook",
        account="gw",
        message_id=f"m{n}",
        user_id="u1",
        conversation_id="c1",
        text=text,
    )
    return QueuedMessage(
        entry_id=f"{n}-0", priority=priority, ticket_id=f"T{n}", message=message, enqueued_at=0
    )


@pytest.fixture
async def llm(fake_llm: FakeOpenAI) -> AsyncIterator[HolySheepClient]:
    client = HolySheepClient(
        api_key="sk-test", base_url=fake_llm.base_url, backoff_base=0.01, max_attempts=1
    )
    yield client
    await client.aclose()


def peak_handler(
    llm: HolySheepClient, redis: Redis, keys: Keys, monitor: PeakMonitor, **options: object
) -> ReplyHandler:
    demo = DemoShop()
    return ReplyHandler(
        llm,
        ConversationState(redis, keys),
        Metrics(),
        shop=demo,
        templates=TemplateAnswers(demo),
        peak=monitor,
        **options,  # type: ignore[arg-type]
    )


async def reply_to(handler: ReplyHandler, queued: QueuedMessage) -> Reply:
    reply = await handler.answer(queued)
    assert reply is not None
    return reply


async def test_lean_levels_shorten_answers_trim_history_and_switch_model(
    redis: Redis, keys: Keys, llm: HolySheepClient, fake_llm: FakeOpenAI
) -> None:
    monitor = PeakMonitor(redis, keys, lean_max_tokens=120, fallback_model="cheap-model")
    handler = peak_handler(llm, redis, keys, monitor)
    state = handler.state
    for n in range(5):
        await state.record_turn(
            entry("").message.conversation_key,
            [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}],
        )
    await reply_to(handler, entry("tell me a joke", n=1))
    normal = fake_llm.requests[-1].json
    assert normal["max_tokens"] == 500 and normal["model"] == "deepseek-v3.2"
    assert len([m for m in normal["messages"] if m["role"] == "assistant"]) == 5

    await monitor.force("1")
    await reply_to(handler, entry("tell me another joke", n=2))
    lean = fake_llm.requests[-1].json
    assert lean["max_tokens"] == 120 and lean["model"] == "deepseek-v3.2"
    assert [m["content"] for m in lean["messages"] if m["role"] == "assistant"] == ["a3", "a4"]
    await monitor.force("2")
    await reply_to(handler, entry("one more joke", n=3))
    assert fake_llm.requests[-1].json["model"] == "cheap-model"


async def test_level_3_answers_priority_2_from_templates_without_the_llm(
    redis: Redis, keys: Keys, llm: HolySheepClient, fake_llm: FakeOpenAI
) -> None:
    monitor = PeakMonitor(redis, keys)
    handler = peak_handler(llm, redis, keys, monitor)
    await monitor.force("3")
    question = "what payment methods do you accept?"
    reply = await reply_to(handler, entry(question, priority=2, n=1))
    assert reply.source is ReplySource.TEMPLATE and fake_llm.calls == 0
    urgent = await reply_to(handler, entry(question, priority=1, n=2))
    assert urgent.source is ReplySource.LLM and fake_llm.calls == 1
    await monitor.force("2")
    reply = await reply_to(handler, entry(question + " thanks", priority=2, n=3))
    # No template below level 3: the answer the urgent customer got, shared by intent.
    assert reply.source is ReplySource.CACHE and reply.text == urgent.text
    assert fake_llm.calls == 1


async def test_with_the_budget_spent_no_llm_call_is_made(
    redis: Redis, keys: Keys, llm: HolySheepClient, fake_llm: FakeOpenAI
) -> None:
    monitor = PeakMonitor(redis, keys, budget=Budget(tokens_per_day=100))
    await redis.set(keys.budget(f"d{utc_day()}"), 100)
    await monitor.refresh()
    handler = peak_handler(llm, redis, keys, monitor)
    templated = await reply_to(handler, entry("how long does delivery take?", priority=1, n=1))
    assert templated.source is ReplySource.TEMPLATE
    apology = await reply_to(handler, entry("write me a poem", priority=1, n=2))
    assert apology.source is ReplySource.FALLBACK and apology.error_code == "budget_exhausted"
    assert fake_llm.calls == 0


async def test_the_provider_breaker_opens_after_failures_and_a_probe_closes_it(
    redis: Redis, keys: Keys, llm: HolySheepClient, fake_llm: FakeOpenAI
) -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=15, clock=clock)
    handler = peak_handler(llm, redis, keys, PeakMonitor(redis, keys), breaker=breaker)
    fake_llm.script(status=503, times=2)
    for n in (1, 2):
        failed = await reply_to(handler, entry(f"question {n}", n=n))
        assert failed.source is ReplySource.FALLBACK
    assert fake_llm.calls == 2 and breaker.state == "open"
    assert handler.metrics.provider_circuit._value.get() == 1
    skipped = await reply_to(handler, entry("question 3", n=3))
    assert skipped.error_code == "provider_unavailable" and fake_llm.calls == 2
    clock.now += 15  # the probe goes out and succeeds
    probe = await reply_to(handler, entry("question 4", n=4))
    assert probe.source is ReplySource.LLM and breaker.state == "closed"
    assert handler.metrics.provider_circuit._value.get() == 0


async def test_in_peak_mode_the_same_intent_in_other_words_shares_one_answer(
    redis: Redis, keys: Keys, llm: HolySheepClient, fake_llm: FakeOpenAI
) -> None:
    monitor = PeakMonitor(redis, keys)
    handler = peak_handler(llm, redis, keys, monitor)

    def first_contact(text: str, n: int, locale: str | None = None) -> QueuedMessage:
        queued = entry(text, n=n)
        queued.message.conversation_id = f"c{n}"  # a new customer each time
        queued.message.metadata.locale = locale
        return queued

    await reply_to(handler, first_contact("how do I reset my password?", 1))
    other_words = await reply_to(handler, first_contact("forgot my pasword, help pls", 2))
    assert other_words.source is ReplySource.LLM and fake_llm.calls == 2  # normal: by text
    await monitor.force("1")
    first = await reply_to(handler, first_contact("how do I reset my password?", 3))
    shared = await reply_to(handler, first_contact("i forgot my password what now", 4))
    assert shared.source is ReplySource.CACHE and shared.text == first.text
    chinese = await reply_to(handler, first_contact("我忘记密码了怎么办", 5))
    assert chinese.source is ReplySource.LLM  # another language: its own answer
    vague = await reply_to(handler, first_contact("hello there", 6))
    again = await reply_to(handler, first_contact("good morning", 7))
    assert vague.source is again.source is ReplySource.LLM  # no intent: never by intent
    assert fake_llm.calls == 6
    # A channel's locale (Telegram sends one) is the language, not personal context.
    american = await reply_to(handler, first_contact("password reset please", 8, "en-US"))
    assert american.source is ReplySource.CACHE and american.text == first.text
    german = await reply_to(handler, first_contact("password reset please", 9, "de-DE"))
    assert german.source is ReplySource.LLM  # another language: its own answer
    detailed = await reply_to(handler, first_contact("reset password for bob@example.com", 10))
    assert detailed.source is ReplySource.LLM  # details of its own: never by intent
    assert fake_llm.calls == 8


async def test_messages_in_progress_are_not_ahead_of_a_new_one(redis: Redis, keys: Keys) -> None:
    queue = PriorityQueue(redis, keys)
    await queue.ensure_groups()
    monitor = PeakMonitor(redis, keys, first_response_s=5, slots=10, burst_window_s=1.5)
    monitor.record_latency(1.5)
    for n in range(40):
        await queue.admit(inbound(n), 2)
    await queue.read("busy-worker", 40)  # all taken: 40 answers in progress, none waiting
    await monitor.refresh()
    assert monitor.depths[2] == 40 and monitor.waiting[2] == 0
    assert monitor.estimated_wait(2) == 1.5 + 1.5  # its burst window and its own answer
    assert monitor.acknowledgement(2, None) is None  # no "we are busy" at an ordinary load
    for n in range(40, 100):
        await queue.admit(inbound(n), 2)
    await monitor.refresh()
    assert monitor.waiting[2] == 60
    assert math.isinf(monitor.estimated_wait(2))  # more waiting than slots, no rate yet


async def test_a_failed_read_of_the_figures_is_a_redis_error(redis: Redis, keys: Keys) -> None:
    # The refresh loop survives RedisErrors; a failed read must not surface as another error.
    monitor = PeakMonitor(redis, keys)
    await redis.set(keys.stats_day(utc_day()), "not a hash")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await monitor.refresh()
