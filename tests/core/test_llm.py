"""HolySheepClient over real HTTP against the scriptable fake OpenAI server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest

from core.errors import LLMError
from core.llm import (
    DEFAULT_PRICES,
    Completion,
    HolySheepClient,
    ModelPrice,
    Usage,
    parse_price_table,
)
from tests.fakes.openai_server import FakeOpenAI, completion_body

API_KEY = "sk-test-secret-key-123"
MESSAGES = [
    {"role": "system", "content": "You are a shop assistant."},
    {"role": "user", "content": "where is my parcel"},
]


class SleepRecorder:
    """Stands in for asyncio.sleep: records the waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


MakeClient = Callable[..., HolySheepClient]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def make_client(fake: FakeOpenAI, sleeps: SleepRecorder) -> AsyncIterator[MakeClient]:
    clients: list[HolySheepClient] = []

    def make(**overrides: Any) -> HolySheepClient:
        options: dict[str, Any] = {
            "api_key": API_KEY,
            "base_url": fake.base_url,
            "backoff_base": 0.01,
            "backoff_cap": 0.05,
            "sleep": sleeps,
        }
        options.update(overrides)
        client = HolySheepClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def fail(client: HolySheepClient, **kwargs: Any) -> LLMError:
    with pytest.raises(LLMError) as caught:
        await client.complete(MESSAGES, **kwargs)
    return caught.value


# -- the happy path ------------------------------------------------------------------------


async def test_sends_openai_request_and_returns_answer(
    fake: FakeOpenAI, make_client: MakeClient
) -> None:
    result = await make_client().complete(MESSAGES)

    assert isinstance(result, Completion)
    assert result.text == "Echo: where is my parcel"
    assert result.model == "deepseek-v3.2"
    assert result.finish_reason == "stop"
    assert result.tool_calls == []
    assert result.attempts == 1
    assert result.latency_s > 0
    (request,) = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json == {
        "model": "deepseek-v3.2",
        "messages": MESSAGES,
        "max_tokens": 500,
        "temperature": 0.7,
    }


async def test_usage_and_cost_count_cache_hits_at_the_cached_price(
    fake: FakeOpenAI, make_client: MakeClient
) -> None:
    fake.script(json=completion_body(prompt_tokens=1000, completion_tokens=200, cached_tokens=600))

    result = await make_client().complete(MESSAGES)

    assert result.usage == Usage(prompt_tokens=1000, completion_tokens=200, cached_tokens=600)
    assert result.priced is True
    # 400 missed at 0.28, 600 cached at 0.028, 200 out at 0.42 (USD per 1M tokens).
    assert result.cost_usd == pytest.approx((400 * 0.28 + 600 * 0.028 + 200 * 0.42) / 1e6)


async def test_openai_style_cached_tokens_are_counted(
    fake: FakeOpenAI, make_client: MakeClient
) -> None:
    body = completion_body(
        prompt_tokens=100, completion_tokens=7, cached_tokens=64, usage_style="openai"
    )
    fake.script(json=body)

    result = await make_client().complete(MESSAGES)

    assert result.usage == Usage(prompt_tokens=100, completion_tokens=7, cached_tokens=64)


async def test_missing_usage_counts_zero(fake: FakeOpenAI, make_client: MakeClient) -> None:
    fake.script(json=completion_body(usage_style="none"))

    result = await make_client().complete(MESSAGES)

    assert result.usage == Usage(0, 0, 0)
    assert result.cost_usd == 0.0


async def test_unknown_model_costs_nothing_and_says_unpriced(
    fake: FakeOpenAI, make_client: MakeClient
) -> None:
    fake.script(json=completion_body(model="mystery-1", prompt_tokens=50))

    result = await make_client(model="mystery-1").complete(MESSAGES)

    assert (result.priced, result.cost_usd, result.model) == (False, 0.0, "mystery-1")


async def test_custom_price_table_is_used(fake: FakeOpenAI, make_client: MakeClient) -> None:
    fake.script(json=completion_body(prompt_tokens=1_000_000, completion_tokens=0))
    client = make_client(prices={"deepseek-v3.2": ModelPrice(1.0, 0.1, 2.0)})

    result = await client.complete(MESSAGES)

    assert result.cost_usd == pytest.approx(1.0)


async def test_per_call_overrides_reach_the_request(
    fake: FakeOpenAI, make_client: MakeClient
) -> None:
    await make_client().complete(MESSAGES, model="other-model", max_tokens=42, temperature=0.0)

    body = fake.requests[0].json
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("other-model", 42, 0.0)


async def test_tools_are_sent_and_tool_calls_come_back_raw(
    fake: FakeOpenAI, make_client: MakeClient
) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "order_status",
                "description": "Look up an order",
                "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
            },
        }
    ]
    # arguments is a JSON string and may be invalid: the client hands it over untouched.
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "order_status", "arguments": '{"order_id": "A1'},
        }
    ]
    fake.script(json=completion_body(content=None, tool_calls=calls))

    result = await make_client().complete(MESSAGES, tools=tools, tool_choice="auto")

    assert result.text == ""
    assert result.tool_calls == calls
    assert result.finish_reason == "tool_calls"
    assert fake.requests[0].json["tools"] == tools
    assert fake.requests[0].json["tool_choice"] == "auto"


# -- retries and delay hints ---------------------------------------------------------------


async def test_429_waits_for_retry_after_ms_then_succeeds(
    fake: FakeOpenAI, make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    fake.script(status=429, headers={"retry-after-ms": "10", "retry-after": "7"})

    result = await make_client().complete(MESSAGES)

    assert result.attempts == 2
    assert fake.calls == 2
    assert sleeps.waits == [pytest.approx(0.010)]


async def test_retry_after_ms_is_honoured_in_real_time(fake: FakeOpenAI) -> None:
    fake.script(status=429, headers={"retry-after-ms": "150"})
    client = HolySheepClient(api_key=API_KEY, base_url=fake.base_url, backoff_base=0.001)
    try:
        await client.complete(MESSAGES)
    finally:
        await client.aclose()

    gap = fake.requests[1].at - fake.requests[0].at
    assert 0.15 <= gap < 1.0


async def test_retry_after_seconds_is_honoured(
    fake: FakeOpenAI, make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    fake.script(status=503, headers={"retry-after": "2"})

    await make_client().complete(MESSAGES)

    assert sleeps.waits == [2.0]


async def test_retry_after_http_date_is_honoured(
    fake: FakeOpenAI, make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    fake.script(status=429, headers={"retry-after": formatdate(time.time() + 5, usegmt=True)})

    await make_client().complete(MESSAGES)

    (wait,) = sleeps.waits
    assert 3.5 <= wait <= 5.0  # the date has whole-second precision


async def test_hint_past_the_deadline_fails_at_once_with_retry_after(
    fake: FakeOpenAI, make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    fake.script(status=429, headers={"retry-after": "60"})

    error = await fail(make_client(deadline=5.0))

    assert (error.status, error.code, error.retry_after) == (429, "http_429", 60.0)
    assert error.retryable is True
    assert fake.calls == 1
    assert sleeps.waits == []


@pytest.mark.parametrize("field", ["error_code", "error_type"])
async def test_429_insufficient_quota_is_not_retried(
    fake: FakeOpenAI, make_client: MakeClient, field: str
) -> None:
    error_fields: dict[str, Any] = {field: "insufficient_quota"}
    fake.script(status=429, error_message="You exceeded quota", **error_fields)

    error = await fail(make_client())

    assert (error.status, error.code, error.retryable) == (429, "insufficient_quota", False)
    assert error.details == "You exceeded quota"
    assert fake.calls == 1


async def test_500_three_times_fails_after_exactly_three_calls(
    fake: FakeOpenAI, make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    fake.script(status=500, times=3)

    error = await fail(make_client())

    assert (error.status, error.code, error.retryable) == (500, "http_500", True)
    assert fake.calls == 3
    # Exponential backoff with equal jitter: [base/2, base], then [base, 2*base].
    first, second = sleeps.waits
    assert 0.005 <= first <= 0.01
    assert 0.01 <= second <= 0.02


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried(
    fake: FakeOpenAI, make_client: MakeClient, status: int
) -> None:
    fake.script(status=status)

    result = await make_client().complete(MESSAGES)

    assert result.attempts == 2
    assert fake.calls == 2


async def test_401_is_not_retried_and_never_leaks_the_key(
    fake: FakeOpenAI, make_client: MakeClient
) -> None:
    fake.script(status=401, error_code="invalid_api_key", error_message="Incorrect API key")

    error = await fail(make_client())

    assert (error.status, error.code, error.retryable) == (401, "invalid_api_key", False)
    assert fake.calls == 1
    for text in (str(error), repr(error), error.details, repr(make_client())):
        assert API_KEY not in text


@pytest.mark.parametrize("status", [400, 402, 403, 404, 422])
async def test_client_errors_are_not_retried(
    fake: FakeOpenAI, make_client: MakeClient, status: int
) -> None:
    fake.script(status=status)

    error = await fail(make_client())

    assert (error.status, error.code, error.retryable) == (status, f"http_{status}", False)
    assert fake.calls == 1


async def test_details_are_truncated(fake: FakeOpenAI, make_client: MakeClient) -> None:
    fake.script(status=400, error_message="x" * 5000)

    error = await fail(make_client())

    assert error.details == "x" * 200


async def test_non_json_error_page_gives_http_code(
    fake: FakeOpenAI, make_client: MakeClient
) -> None:
    fake.script(status=502, body=b"<html>Bad Gateway</html>", times=3)

    error = await fail(make_client())

    assert (error.code, error.details) == ("http_502", "<html>Bad Gateway</html>")
    assert fake.calls == 3


# -- timeouts and the deadline -------------------------------------------------------------


async def test_slow_attempt_times_out_and_the_next_succeeds(
    fake: FakeOpenAI, make_client: MakeClient
) -> None:
    fake.script(delay=5.0)

    result = await make_client(attempt_timeout=0.2).complete(MESSAGES)

    assert result.attempts == 2
    assert fake.calls == 2


async def test_every_attempt_timing_out_gives_timeout(
    fake: FakeOpenAI, make_client: MakeClient
) -> None:
    fake.script(delay=5.0, times=3)

    error = await fail(make_client(attempt_timeout=0.1))

    assert (error.code, error.retryable) == ("timeout", True)
    assert fake.calls == 3


@pytest.mark.parametrize("per_call", [False, True])
async def test_deadline_bounds_the_whole_call(fake: FakeOpenAI, per_call: bool) -> None:
    fake.script(delay=5.0, times=3)
    client = HolySheepClient(
        api_key=API_KEY,
        base_url=fake.base_url,
        attempt_timeout=0.2,
        backoff_base=0.05,
        deadline=30.0 if per_call else 0.3,
    )
    try:
        started = time.monotonic()
        error = await fail(client, deadline=0.3 if per_call else None)
        elapsed = time.monotonic() - started
    finally:
        await client.aclose()

    assert elapsed <= 0.3 + 0.2  # slack for a loaded machine, far below one more attempt
    assert error.code == "deadline_exceeded"


async def test_backoff_never_sleeps_past_the_deadline(fake: FakeOpenAI) -> None:
    fake.script(status=500, times=3)
    # A 10 s backoff step cannot fit in a 1 s deadline: give up at once with the last error.
    client = HolySheepClient(
        api_key=API_KEY, base_url=fake.base_url, backoff_base=10.0, backoff_cap=10.0, deadline=1.0
    )
    try:
        started = time.monotonic()
        error = await fail(client)
        elapsed = time.monotonic() - started
    finally:
        await client.aclose()

    assert elapsed < 0.5
    assert (error.code, fake.calls) == ("http_500", 1)


# -- transport and body failures -----------------------------------------------------------


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_retried_then_connection_error(
    sleeps: SleepRecorder,
) -> None:
    client = HolySheepClient(
        api_key=API_KEY, base_url=f"http://127.0.0.1:{unused_port()}/v1", sleep=sleeps
    )
    try:
        error = await fail(client)
    finally:
        await client.aclose()

    assert (error.code, error.status, error.retryable) == ("connection_error", None, True)
    assert len(sleeps.waits) == 2  # three attempts


async def test_dropped_connection_is_retried(fake: FakeOpenAI, make_client: MakeClient) -> None:
    fake.script(disconnect=True)

    result = await make_client().complete(MESSAGES)

    assert (result.attempts, fake.calls) == (2, 2)


async def test_malformed_json_is_retried_then_bad_response(
    fake: FakeOpenAI, make_client: MakeClient
) -> None:
    fake.script(body=b"not json", times=3)

    error = await fail(make_client())

    assert (error.code, error.status, error.retryable) == ("bad_response", 200, True)
    assert fake.calls == 3


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{}", b'{"choices": []}', b'{"choices": [{"message": null}]}', b"[]"],
)
async def test_malformed_answer_once_then_success(
    fake: FakeOpenAI, make_client: MakeClient, body: bytes
) -> None:
    fake.script(body=body)

    result = await make_client().complete(MESSAGES)

    assert result.attempts == 2


async def test_error_object_in_a_200_uses_the_provider_code(
    fake: FakeOpenAI, make_client: MakeClient
) -> None:
    fake.script(json={"error": {"message": "no money", "code": "insufficient_quota"}})

    error = await fail(make_client())

    assert (error.code, error.retryable, fake.calls) == ("insufficient_quota", False, 1)


@pytest.mark.parametrize("api_key", [None, ""])
async def test_not_configured_makes_no_http_call(
    fake: FakeOpenAI, make_client: MakeClient, api_key: str | None
) -> None:
    client = make_client(api_key=api_key)

    error = await fail(client)

    assert client.configured is False
    assert error.code == "not_configured"
    assert fake.calls == 0


# -- session ownership ---------------------------------------------------------------------


async def test_injected_session_is_not_closed_by_aclose(fake: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as session:
        client = HolySheepClient(api_key=API_KEY, base_url=fake.base_url, session=session)
        await client.complete(MESSAGES)
        await client.aclose()
        assert not session.closed
        await client.complete(MESSAGES)  # still usable
    assert fake.calls == 2


async def test_own_session_is_reused_and_closed(fake: FakeOpenAI) -> None:
    client = HolySheepClient(api_key=API_KEY, base_url=fake.base_url)
    await asyncio.gather(*(client.complete(MESSAGES) for _ in range(20)))
    session = client._session
    assert session is not None
    await client.aclose()
    assert session.closed
    assert fake.calls == 20


# -- logging -------------------------------------------------------------------------------


async def test_logs_carry_status_and_code_but_no_key_or_content(
    fake: FakeOpenAI, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(status=500, times=3)
    caplog.set_level(logging.INFO, logger="peakdesk.llm")

    await fail(make_client())

    logged = [r.getMessage() for r in caplog.records if r.name == "peakdesk.llm"]
    assert len(logged) == 3
    assert all("status=500" in line and "code=http_500" in line for line in logged)
    for line in logged:
        assert API_KEY not in line
        assert "parcel" not in line and "shop assistant" not in line


# -- the price table -----------------------------------------------------------------------


def test_default_prices_hold_deepseek_v32() -> None:
    assert DEFAULT_PRICES["deepseek-v3.2"] == ModelPrice(0.28, 0.028, 0.42)


def test_parse_price_table() -> None:
    spec = json.dumps(
        {
            "deepseek-v3.2": {"input": 0.28, "cached_input": 0.028, "output": 0.42},
            "gpt-x": {"input": 1, "output": 4},
        }
    )

    table = parse_price_table(spec)

    assert table == {
        "deepseek-v3.2": ModelPrice(0.28, 0.028, 0.42),
        "gpt-x": ModelPrice(1.0, 1.0, 4.0),  # no cached price: cache hits cost full input
    }


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"m": 1}', "must be an object"),
        ('{"m": {"input": 1}}', "lacks 'output'"),
        ('{"m": {"output": 1}}', "lacks 'input'"),
        ('{"m": {"input": -1, "output": 1}}', ">= 0"),
        ('{"m": {"input": "1", "output": 1}}', "must be a number"),
        ('{"m": {"input": true, "output": 1}}', "must be a number"),
        ('{"m": {"input": 1, "output": 1, "ouput": 2}}', "unknown fields"),
        ('{"": {"input": 1, "output": 1}}', "empty model name"),
    ],
)
def test_parse_price_table_rejects_bad_specs(spec: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_price_table(spec)


# -- the fake itself (other tests build on it) ---------------------------------------------


async def test_fake_responder_and_latency_shape_the_default_answer() -> None:
    async def responder(body: dict[str, Any]) -> dict[str, Any]:
        return completion_body(f"{len(body['messages'])} messages", model="fake-model")

    async with FakeOpenAI(responder=responder, latency=0.05) as server:
        client = HolySheepClient(api_key=API_KEY, base_url=server.base_url)
        try:
            started = time.monotonic()
            result = await client.complete(MESSAGES)
        finally:
            await client.aclose()

    assert (result.text, result.model) == ("2 messages", "fake-model")
    assert time.monotonic() - started >= 0.05


async def test_fake_with_api_key_refuses_a_wrong_key(sleeps: SleepRecorder) -> None:
    async with FakeOpenAI(api_key="sk-right") as server:
        client = HolySheepClient(api_key="sk-wrong", base_url=server.base_url, sleep=sleeps)
        try:
            error = await fail(client)
        finally:
            await client.aclose()

    assert (error.status, error.code, server.calls) == (401, "invalid_api_key", 1)
