"""``peakdesk simulate``: the simulated provider's limits, the peak's shape, the report's
definitions, and one tiny simulation end to end against a real ``peakdesk serve``."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bots.cli import main as cli_main
from bots.simulate.analysis import RunRecord, analyse
from bots.simulate.customers import Phrase, Plan, PlannedMessage, load_phrases, plan_peak
from bots.simulate.load import LoadGenerator, SentMessage
from bots.simulate.options import Options
from bots.simulate.peakdesk import peakdesk_env
from bots.simulate.provider import MinuteWindow, ProviderConfig, SimulatedProvider
from bots.simulate.run import Simulation, redacted
from bots.simulate.scenario import Scenario
from bots.simulate.sink import ReceivedReply, parse_reply

# -- the simulated provider -------------------------------------------------------------------


def test_the_minute_window_refuses_over_the_request_limit_until_the_oldest_ages_out() -> None:
    window = MinuteWindow()
    for at in (0.0, 10.0, 20.0):
        assert window.wait_s(at, 1, rpm=3, tpm=0) == 0
        window.admit(at, 1)
    assert window.wait_s(30.0, 1, rpm=3, tpm=0) == pytest.approx(30.0)  # the one of t=0
    assert window.wait_s(60.0, 1, rpm=3, tpm=0) == 0  # it left the window


def test_the_minute_window_counts_reserved_tokens_then_the_real_use() -> None:
    window = MinuteWindow()
    use = window.admit(0.0, 900)  # prompt + max_tokens reserved on arrival
    assert window.wait_s(1.0, 200, rpm=0, tpm=1000) == pytest.approx(59.0)
    window.correct(use, 300)  # answered: 300 tokens really used
    assert window.wait_s(1.0, 200, rpm=0, tpm=1000) == 0
    assert window.wait_s(1.0, 2000, rpm=0, tpm=1000) == 60.0  # can never fit


@pytest.fixture
async def provider_server() -> AsyncIterator[tuple[SimulatedProvider, TestServer]]:
    config = ProviderConfig(
        rpm=3, concurrency=0, latency_median_s=0.001, latency_p95_s=0.002, api_key="sk-sim"
    )
    provider = SimulatedProvider(config, clock=lambda: 0.5)
    server = TestServer(provider.app(), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield provider, server
    finally:
        await server.close()


async def _complete(
    http: aiohttp.ClientSession, server: TestServer, text: str, key: str = "sk-sim"
) -> tuple[int, dict[str, str], dict[str, object]]:
    body = {
        "model": "deepseek-v3.2",
        "max_tokens": 100,
        "tools": [{"type": "function", "function": {"name": "get_policy", "parameters": {}}}],
        "tool_choice": "auto",
        "messages": [
            {"role": "system", "content": "You are the shop's assistant. " * 20},
            {"role": "user", "content": text},
        ],
    }
    async with http.post(
        server.make_url("/v1/chat/completions"),
        json=body,
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        headers = {k.lower(): v for k, v in response.headers.items()}
        return response.status, headers, await response.json()


async def test_the_provider_answers_429_with_retry_after_over_its_requests_per_minute(
    provider_server: tuple[SimulatedProvider, TestServer],
) -> None:
    provider, server = provider_server
    async with aiohttp.ClientSession() as http:
        answers = [await _complete(http, server, f"where is order {n}?") for n in range(4)]
    statuses = [status for status, _, _ in answers]
    assert statuses == [200, 200, 200, 429]
    _, headers, body = answers[3]
    assert int(headers["retry-after"]) >= 59 and "retry-after-ms" in headers
    assert body["error"] == {  # the OpenAI error shape, retryable by its code
        "message": "Rate limit reached for requests or tokens per minute",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    # Rate headers on every answer: the last accepted call left nothing.
    assert answers[2][1]["x-ratelimit-limit-requests"] == "3"
    assert answers[2][1]["x-ratelimit-remaining-requests"] == "0"
    [second] = provider.seconds
    assert (second.calls, second.admitted, second.throttled) == (4, 3, 1)


async def test_the_provider_answers_in_text_with_usage_and_a_cached_prefix(
    provider_server: tuple[SimulatedProvider, TestServer],
) -> None:
    _, server = provider_server
    async with aiohttp.ClientSession() as http:
        _, _, first = await _complete(http, server, "how do I get a refund?")
        _, _, second = await _complete(http, server, "can I change my address?")
        status, _, _ = await _complete(http, server, "hello", key="sk-wrong")
    assert status == 401
    message = first["choices"][0]["message"]  # type: ignore[index]
    assert message["role"] == "assistant" and message["content"] and "tool_calls" not in message
    usage_first, usage_second = first["usage"], second["usage"]
    assert usage_first["prompt_tokens_details"]["cached_tokens"] == 0  # type: ignore[index]
    cached = usage_second["prompt_tokens_details"]["cached_tokens"]  # type: ignore[index]
    # Tools and system prompt were seen before: cached; the new question is not.
    assert 0 < cached < usage_second["prompt_tokens"]  # type: ignore[index]


async def test_the_provider_refuses_calls_over_its_concurrency() -> None:
    config = ProviderConfig(concurrency=1, latency_median_s=0.3, latency_p95_s=0.3)
    provider = SimulatedProvider(config, clock=lambda: 0.0)
    server = TestServer(provider.app(), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            statuses = sorted(
                s
                for s, _, _ in await asyncio.gather(
                    _complete(http, server, "one", key=config.api_key),
                    _complete(http, server, "two", key=config.api_key),
                )
            )
    finally:
        await server.close()
    assert statuses == [200, 429]


# -- the gateway ------------------------------------------------------------------------------


async def test_the_gateway_resends_refused_messages_and_notes_throttled_ones() -> None:
    seen: list[str] = []

    async def webhook(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body["message_id"])
        if body["message_id"] == "c000000.1" and len(seen) == 1:
            return web.json_response(
                {"error": "queue full"}, status=503, headers={"Retry-After": "0"}
            )
        if body["message_id"] == "c000001.1":  # refused for good
            return web.json_response(
                {"error": "queue full"}, status=503, headers={"Retry-After": "0.1"}
            )
        if body["message_id"] == "c000002.1":  # over its customer's flood limit
            throttled = {"status": "throttled", "ticket_id": "T2", "notice": False}
            return web.json_response(throttled, status=202)
        return web.json_response({"status": "queued", "ticket_id": "T1", "priority": 1}, status=202)

    app = web.Application()
    app.router.add_post("/webhook/sim", webhook)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    plan = Plan(
        [
            PlannedMessage(0.0, "c000000", "where is my order?", "first"),
            PlannedMessage(0.0, "c000001", "cancel it", "first"),
            PlannedMessage(0.0, "c000002", "hello??", "first"),
        ],
        {},
    )
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession() as http:
            load = LoadGenerator(
                http,
                str(server.make_url("")).rstrip("/"),
                "http://127.0.0.1:9/callback",
                plan,
                clock=lambda: time.monotonic() - started,
                end_at=0.0,
                give_up_s=0.35,
            )
            await load.run()
            await load.finish(timeout=5)
    finally:
        await server.close()
    first, refused = load.messages["c000000.1"], load.messages["c000001.1"]
    assert (first.status, first.attempts, first.refusals, first.priority) == ("accepted", 2, 1, 1)
    assert refused.status == "gave_up" and refused.refusals >= 3
    assert load.messages["c000002.1"].status == "throttled"  # no answer is expected
    assert set(seen) == {"c000000.1", "c000001.1", "c000002.1"}  # retries reuse the id


# -- the peak ---------------------------------------------------------------------------------


def test_the_rate_curve_is_baseline_then_ramp_hold_and_decay() -> None:
    s = Scenario(scale=0.01, baseline_s=20, ramp_s=30, hold_s=60, decay_s=60)
    assert s.rate(5) == pytest.approx(1000 * 0.01 / 60)  # 10 messages a minute
    assert s.rate(35) == pytest.approx((s.baseline_per_s + s.peak_per_s) / 2)  # mid-ramp
    assert s.rate(50) == s.rate(109) == pytest.approx(500 * 1000 * 0.01 / 60)  # the hold
    assert s.rate(140) == pytest.approx((s.baseline_per_s + s.peak_per_s) / 2)  # mid-decay
    assert s.rate(170) == s.rate(-1) == 0
    assert [s.phase(t) for t in (0, 25, 60, 120, 175)] == [
        "baseline",
        "ramp",
        "hold",
        "decay",
        "done",
    ]
    integral = sum(s.rate(t / 10 + 0.05) for t in range(int(s.duration_s * 10))) / 10
    assert s.expected_messages() == pytest.approx(integral, rel=1e-3)


def test_the_plan_follows_the_curve_with_bursts_and_is_reproducible() -> None:
    phrases = [Phrase(f"question {n}", f"intent{n % 3}") for n in range(50)]
    s = Scenario(scale=0.01, baseline_s=5, ramp_s=5, hold_s=20, decay_s=10)
    plan = plan_peak(s, phrases, seed=7)
    assert plan == plan_peak(s, phrases, seed=7)
    expected = s.expected_messages()
    assert abs(len(plan.messages) - expected) < 4 * math.sqrt(expected)  # Poisson noise
    assert [m.at for m in plan.messages] == sorted(m.at for m in plan.messages)
    per_customer: dict[str, int] = {}
    for m in plan.messages:
        per_customer[m.conversation] = per_customer.get(m.conversation, 0) + 1
    bursts = sum(1 for n in per_customer.values() if n > 1) / len(per_customer)
    assert 0.10 < bursts < 0.20 and max(per_customer.values()) == 3
    in_hold = sum(1 for m in plan.messages if 10 <= m.at < 30)
    assert in_hold > 0.6 * len(plan.messages)


def test_the_shipped_texts_are_the_bitext_sample() -> None:
    phrases, note = load_phrases()
    assert len(phrases) == 4514 and "Bitext" in note
    assert {p.intent for p in phrases} >= {"cancel_order", "track_order", "payment_issue"}
    licence = Path(__file__).resolve().parents[2] / "bots/simulate/data/LICENSE.txt"
    assert "Community Data License Agreement" in licence.read_text(encoding="utf-8")


# -- what the report counts -------------------------------------------------------------------


def _accepted(message_id: str, sent: float, priority: int) -> SentMessage:
    conversation = message_id.split(".")[0]
    return SentMessage(
        message_id,
        conversation,
        "first",
        sent,
        first_sent=sent,
        status="accepted",
        priority=priority,
    )


def _reply(at: float, ids: tuple[str, ...], reply_id: str, source: str) -> ReceivedReply:
    return ReceivedReply(at, ids[0].split(".")[0], ids, reply_id, source, None)


def test_the_report_counts_acks_merged_answers_duplicates_and_lost_messages() -> None:
    messages = {
        m.message_id: m
        for m in (
            _accepted("a.1", 0.0, 0),
            _accepted("a.2", 0.5, 0),  # a burst, answered together with a.1
            _accepted("b.1", 1.0, 2),  # acknowledged, then answered twice (a duplicate)
            _accepted("b.2", 2.0, 2),  # sent after b.1's acknowledgement: none of its own
            _accepted("c.1", 1.0, 2),  # never answered: lost
        )
    }
    replies = [
        _reply(2.0, ("a.1", "a.2"), "Ta", "llm"),
        _reply(1.5, ("b.1",), "Tb-ack", "ack"),
        _reply(9.0, ("b.1", "b.2"), "Tb", "template"),
        _reply(9.5, ("b.1", "b.2"), "Tb", "template"),  # a redelivery: same reply id
        _reply(12.0, ("b.1",), "Tb2", "cache"),  # a second answer: a duplicate reply
    ]
    report = analyse(
        RunRecord(
            scenario=Scenario(scale=1, baseline_s=5, ramp_s=0, hold_s=0, decay_s=0),
            provider=ProviderConfig(rpm=60),
            messages=messages,
            replies=replies,
            load_seconds=[],
            provider_seconds=[],
            depths=[],
            levels=[],
            estimates=[],
            cpu=[],
            final_metrics=None,
            load_end_s=5.0,
            end_s=13.0,
            drained=False,
        )
    )
    assert report["messages"]["lost"] == 1 and report["messages"]["answered"] == 4
    assert report["replies"]["duplicate_replies"] == 1  # b.1 only
    assert report["replies"]["redeliveries"] == 1
    assert report["replies"]["merged_answers"] == 3 and report["replies"]["acks"] == 1
    first, full = report["latency"]["first_response"], report["latency"]["full_answer"]
    assert first["0"]["p50"] == 1.5 and first["0"]["max"] == 2.0  # a.2 waited 1.5 s
    # b.1: its acknowledgement after 0.5 s; b.2: the answer after 7 s; c.1: nothing.
    assert (first["2"]["count"], first["2"]["p50"], first["2"]["max"]) == (3, 7.0, None)
    assert full["2"]["p50"] == 8.0 and full["2"]["max"] is None
    late = report["latency"]["first_response_over_target"]
    assert late == {"count": 2, "by_priority": {"2": 2}, "sent_after_an_open_ack": 1}
    assert report["sources"]["without_provider_call"] == 2  # b.1 and b.2's template answer
    targets = {t["target"]: t["met"] for t in report["targets"]}
    assert targets["messages lost"] is False and targets["duplicate replies"] is False


def test_a_callback_without_message_ids_answers_its_message_id() -> None:
    body = {"message_id": "c1.1", "conversation_id": "c1", "reply_id": "T1", "source": "llm"}
    reply = parse_reply(body, 3.0)
    assert reply is not None and reply.message_ids == ("c1.1",) and not reply.is_ack
    merged = parse_reply({**body, "message_ids": ["c1.1", "c1.2"], "source": "ack"}, 3.0)
    assert merged is not None and merged.message_ids == ("c1.1", "c1.2") and merged.is_ack


def test_the_subprocess_gets_no_secret_or_channel_setting_from_the_environment() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOLYSHEEP_API_KEY": "sk-real",
        "TELEGRAM_BOT_TOKEN": "1:real",
        "SLACK_BOT_TOKEN": "xoxb-real",
        "STORE_API_BASE": "https://shop.example",
        "REDIS_URL": "redis://prod:6379/0",
        "WEBHOOK_SECRET": "real",
        "PEAKDESK_TEMPLATES": "always",
        "HOLYSHEEP_MAX_TOKENS": "300",
        "PEAKDESK_PORT": "80",
    }
    env, passed = peakdesk_env({"PEAKDESK_PORT": "4000", "HOLYSHEEP_API_KEY": "sk-sim"}, environ)
    assert env["HOLYSHEEP_API_KEY"] == "sk-sim" and env["PEAKDESK_PORT"] == "4000"
    assert passed == ["HOLYSHEEP_MAX_TOKENS", "PEAKDESK_TEMPLATES"]
    for name in ("TELEGRAM_BOT_TOKEN", "SLACK_BOT_TOKEN", "STORE_API_BASE", "REDIS_URL"):
        assert name not in env
    assert "WEBHOOK_SECRET" not in env and env["PATH"] == "/usr/bin"
    assert redacted("redis://user:s3cret@db.example:6380/2") == "redis://db.example:6380/2"


# -- the command ------------------------------------------------------------------------------


def test_a_bad_flag_or_an_unreachable_redis_exits_non_zero(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as bad_scale:
        cli_main(["simulate", "--scale", "0", "--out", str(tmp_path)])
    assert bad_scale.value.code == 2
    with pytest.raises(SystemExit) as no_redis:
        cli_main(["simulate", "--redis-url", "redis://127.0.0.1:1/0", "--out", str(tmp_path)])
    assert no_redis.value.code == 2
    assert not (tmp_path / "report.json").exists()


@pytest.mark.slow
async def test_a_small_peak_end_to_end_answers_every_message_once(tmp_path: Path) -> None:
    # About 150 messages in 11 s, a provider allowing 20 calls a minute and peakdesk not told
    # so: demand is far above the limit, the provider must refuse calls with 429.
    options = Options(
        scale=1.0,
        baseline_per_min=60,
        peak_factor=20,
        baseline_s=2,
        ramp_s=2,
        hold_s=5,
        decay_s=2,
        provider_rpm=20,
        provider_tpm=0,
        provider_concurrency=0,
        latency_median_s=0.05,
        latency_p95_s=0.2,
        error_rate=0.0,
        configure_limits=False,
        out=tmp_path,
        drain_timeout_s=25,
        progress_every_s=2,
    )
    progress = io.StringIO()
    report = await Simulation(options, progress).run()

    written = json.loads((tmp_path / "report.json").read_text())
    assert written["messages"] == report["messages"] and written["targets"] == report["targets"]
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (tmp_path / "messages.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == report["messages"]["sent"] and all(r["source"] for r in rows)
    markdown = (tmp_path / "report.md").read_text()
    assert "## Targets" in markdown and "| messages lost | 0 | 0 | met |" in markdown
    assert "[" in progress.getvalue() and "provider" in progress.getvalue()

    messages, replies, provider = report["messages"], report["replies"], report["provider"]
    assert report["run"]["drained"] and report["peakdesk"]["exit_code"] == 0
    assert 100 < messages["sent"] < 250 and messages["accepted"] == messages["sent"]
    assert messages["answered"] == messages["accepted"] and messages["lost"] == 0
    assert replies["duplicate_replies"] == 0 and replies["unknown_message_ids"] == 0
    assert (
        sum(v["messages"] for v in report["sources"]["by_source"].values()) == messages["answered"]
    )
    assert provider["calls"] == provider["admitted"] + provider["throttled_429"]
    assert provider["admitted"] >= 20 and provider["throttled_429"] > 0
    assert provider["unauthorized"] == 0  # peakdesk used the simulator's key
    series = report["series"]
    assert len(series["sent"]) == len(series["depth"]["0"]) == len(series["provider_calls"])
    assert sum(series["sent"]) == messages["sent"]
    assert any(d for d in series["depth"]["2"] if d)  # depth was sampled from /metrics
    assert report["latency"]["full_answer"]["all"]["count"] == messages["accepted"]
    assert {q["what"] for q in report["scaled"]} >= {"baseline arrivals", "peak arrivals"}
