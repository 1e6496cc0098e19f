"""The HolySheep client: OpenAI-compatible chat completions with retries, a deadline and pricing.

One :class:`HolySheepClient` per process holds one pooled ``aiohttp.ClientSession``. A call is
a few attempts (each with its own timeout) and backoff sleeps, all inside one overall deadline;
every failure ends as one :class:`core.errors.LLMError` whose ``code`` is the provider's
``error.code``/``error.type`` when it sent one, else ours: ``timeout``, ``connection_error``,
``http_<status>``, ``bad_response``, ``deadline_exceeded`` or ``not_configured``.

Why aiohttp and not httpx: the dispatch target is >= 0.8x a bare aiohttp session in calls/s
from one process at concurrency 50 and 200. httpx's pool measured 463/s and 49/s there against
aiohttp's ~15,000/s (``benchmarks/llm_dispatch.py`` re-measures all of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from redis.exceptions import RedisError

from core.errors import LLMError
from core.pricing import (
    DEFAULT_PRICES,
    ModelPrice,
    Usage,
    parse_price_table,
    parse_usage,
    usage_cost,
)
from core.provider import ProviderLimits, estimate_tokens

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "DEFAULT_PRICES",
    "Completion",
    "HolySheepClient",
    "ModelPrice",
    "Usage",
    "parse_price_table",
]

logger = logging.getLogger("peakdesk.llm")

DEFAULT_BASE_URL = "https://api.holysheep.ai/v1"
DEFAULT_MODEL = "deepseek-v3.2"

_DETAILS_LIMIT = 200
# One encoder for every request: json.dumps with non-default options builds a new one per call.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# 408/409/429 and 5xx are worth another attempt; every other 4xx means the request itself is wrong.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})
# A 429 carrying this code means "out of money", not "slow down": waiting does not help.
_NOT_RETRYABLE_CODES = frozenset({"insufficient_quota"})


@dataclass(frozen=True, slots=True)
class Completion:
    """One successful answer. ``priced`` is False when the model is not in the price table;
    ``latency_s`` leaves out any wait for room under the shared provider limits."""

    text: str
    model: str
    usage: Usage
    cost_usd: float
    priced: bool
    latency_s: float
    attempts: int
    finish_reason: str | None
    tool_calls: list[dict[str, Any]]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """The provider's delay hint in seconds: ``retry-after-ms``, else ``retry-after``
    (seconds or an HTTP date); None when absent or unreadable."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
        return max(seconds, 0.0)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _provider_error(payload: Any) -> tuple[str | None, str]:
    """``(code or type, message truncated)`` from an ``{"error": {...}}`` body."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, str):  # a few proxies send {"error": "text"}
        return None, error[:_DETAILS_LIMIT]
    if not isinstance(error, dict):
        return None, ""
    code = error.get("code") or error.get("type")
    message = error.get("message")
    return (
        str(code) if code is not None else None,
        str(message)[:_DETAILS_LIMIT] if message is not None else "",
    )


def _http_error(status: int, raw: bytes, headers: Mapping[str, str]) -> LLMError:
    try:
        payload = json.loads(raw)
    except ValueError:  # an HTML error page from a proxy, say
        payload = None
    code, details = _provider_error(payload)
    if payload is None:
        details = raw[:_DETAILS_LIMIT].decode("utf-8", "replace")
    retryable = status in _RETRYABLE_STATUSES or status >= 500
    if code in _NOT_RETRYABLE_CODES:
        retryable = False
    return LLMError(
        f"chat completion failed with HTTP {status}",
        status=status,
        code=code or f"http_{status}",
        details=details,
        retry_after=_retry_after(headers),
        retryable=retryable,
    )


def _bad_response(status: int, details: str) -> LLMError:
    return LLMError(
        "chat completion answer is malformed",
        status=status,
        code="bad_response",
        details=details[:_DETAILS_LIMIT],
        retryable=True,
    )


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""  # null when the model answered with tool_calls only


class HolySheepClient:
    """Async client of an OpenAI-compatible ``POST {base_url}/chat/completions`` (Bearer key).

    Share one instance per process: it pools connections in one ``aiohttp.ClientSession``
    (given, or made on first use and closed by :meth:`aclose`). ``sleep`` is injectable so tests
    need not wait through backoffs.
    """

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        max_tokens: int = 500,
        temperature: float = 0.7,
        attempt_timeout: float = 10.0,
        max_attempts: int = 3,
        backoff_base: float = 1.0,
        backoff_cap: float = 8.0,
        deadline: float = 30.0,
        prices: Mapping[str, ModelPrice] | None = None,
        session: aiohttp.ClientSession | None = None,
        max_connections: int = 0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        limits: ProviderLimits | None = None,
        limit_wait_s: float = 120.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if attempt_timeout <= 0 or deadline <= 0:
            raise ValueError("attempt_timeout and deadline must be > 0")
        if backoff_base < 0 or backoff_cap < 0 or max_connections < 0:
            raise ValueError("backoff_base, backoff_cap and max_connections must be >= 0")
        self._api_key = api_key or None
        self._url = base_url.rstrip("/") + "/chat/completions"
        # Built once: the hot path only passes these along.
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._model = model
        self._max_tokens = max_tokens
        self._temperature = temperature
        self._attempt_timeout = attempt_timeout
        # ceil_threshold=inf: aiohttp would otherwise round timeouts over 5 s up to a whole second.
        self._timeout = aiohttp.ClientTimeout(total=attempt_timeout, ceil_threshold=math.inf)
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._deadline = deadline
        self._prices = DEFAULT_PRICES if prices is None else prices
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._sleep = sleep
        self._limits = limits if limits is not None and limits.active else None
        self._limit_wait_s = limit_wait_s  # longest wait for room under the shared limits

    def __repr__(self) -> str:  # never shows the key
        return f"HolySheepClient(url={self._url!r}, model={self._model!r})"

    @property
    def configured(self) -> bool:
        """True when an API key is set (otherwise every call fails with ``not_configured``)."""
        return self._api_key is not None

    async def aclose(self) -> None:
        """Close the session if this client made it; an injected session is the caller's."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(),  # each attempt passes its own
            # An API client needs no cookies; a CDN's cookies would cost every call a filter pass.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        deadline: float | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        priority: int = 0,
    ) -> Completion:
        """Ask for one chat completion; retry what is worth retrying within the deadline.

        ``priority`` (0 most urgent) orders the calls waiting for room under the shared
        provider limits.

        Raises LLMError when no attempt succeeded in time.
        """
        if self._api_key is None:
            raise LLMError("no LLM API key configured", code="not_configured")
        model = model or self._model
        body: dict[str, Any] = {
            "model": model,
            "messages": [m if isinstance(m, dict) else dict(m) for m in messages],
            "max_tokens": self._max_tokens if max_tokens is None else max_tokens,
            "temperature": self._temperature if temperature is None else temperature,
        }
        if tools is not None:
            body["tools"] = [t if isinstance(t, dict) else dict(t) for t in tools]
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        data = _encode_json(body).encode()
        session = self._session or self._open_session()

        loop = asyncio.get_running_loop()
        started = loop.time()
        # [deadline, seconds queued]: waiting for room under the shared provider limits moves
        # the deadline on and does not count as the call's latency.
        clock = [started + (self._deadline if deadline is None else deadline), 0.0]
        attempt = 0
        while True:
            attempt += 1
            deadline_at = clock[0]
            remaining = deadline_at - loop.time()
            try:
                if remaining <= 0:
                    raise LLMError(
                        "chat completion deadline passed", code="deadline_exceeded", retryable=True
                    )
                if self._limits is None:
                    payload, _ = await self._attempt(session, data, remaining)
                else:
                    payload = await self._limited_attempt(session, data, clock, body, priority)
                latency = loop.time() - started - clock[1]
                return self._completion(payload, model, latency, attempt)
            except LLMError as error:
                wait = self._retry_wait(error, attempt, clock[0] - loop.time())
                # Status, code and counts only: never the key, the messages or the answer.
                fields = {"status": error.status, "code": error.code, "attempt": attempt}
                if wait is None:
                    logger.warning(
                        "llm call failed: status=%s code=%s attempts=%d retry_after=%s",
                        error.status,
                        error.code,
                        attempt,
                        error.retry_after,
                        extra=fields,
                    )
                    raise
                logger.info(
                    "llm attempt failed, retrying: status=%s code=%s attempt=%d wait=%.3fs",
                    error.status,
                    error.code,
                    attempt,
                    wait,
                    extra={**fields, "wait_s": round(wait, 3)},
                )
            await self._sleep(wait)

    def _retry_wait(self, error: LLMError, attempt: int, remaining: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up with ``error`` now."""
        if not error.retryable or attempt >= self._max_attempts or remaining <= 0:
            return None
        if error.retry_after is not None:
            # The provider's hint replaces our backoff; past the deadline it means "not in time".
            return error.retry_after if error.retry_after < remaining else None
        # Equal jitter: at least half the exponential step, so a failing provider gets a rest.
        step = min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1))
        wait = step / 2 + random.uniform(0, step / 2)
        return wait if wait < remaining else None

    async def _limited_attempt(
        self,
        session: aiohttp.ClientSession,
        data: bytes,
        clock: list[float],
        body: Any,
        priority: int,
    ) -> Any:
        """One attempt within the provider's shared limits (:mod:`core.provider`).

        The time spent waiting for room under the limits moves the deadline on: at a peak the
        provider's limit, not a slow answer, is what holds the call, and the message keeps its
        place in line instead of ending in an apology (its customer was acknowledged).
        """
        assert self._limits is not None
        loop = asyncio.get_running_loop()
        tokens = estimate_tokens(len(data), int(body.get("max_tokens") or 0))
        queued_at = loop.time()
        try:
            lease = await self._limits.acquire(
                tokens, timeout=self._limit_wait_s, priority=priority
            )
        except TimeoutError as exc:
            raise LLMError(
                "the provider's rate limit left no room in time",
                code="rate_limited",
                retryable=False,
            ) from exc
        except RedisError as exc:  # the shared limits are out of reach: go on without them
            logger.warning("provider limits unavailable (%s)", type(exc).__name__)
            payload, _ = await self._attempt(session, data, clock[0] - loop.time())
            return payload
        queued = loop.time() - queued_at
        clock[0] += queued
        clock[1] += queued
        deadline_at = clock[0]
        status: int | None = None
        headers: Mapping[str, str] | None = None
        used: int | None = None
        try:
            payload, headers = await self._attempt(session, data, deadline_at - loop.time())
            status = 200
            usage = payload.get("usage") if isinstance(payload, dict) else None
            if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
                used = usage["total_tokens"]
            return payload
        except LLMError as error:
            status = error.status
            raise
        finally:
            with contextlib.suppress(RedisError):
                await self._limits.release(lease, status=status, headers=headers, used_tokens=used)

    async def _attempt(
        self, session: aiohttp.ClientSession, data: bytes, remaining: float
    ) -> tuple[Any, Mapping[str, str]]:
        """One HTTP exchange; returns the decoded 2xx JSON and the response headers, or raises
        LLMError."""
        cut_by_deadline = remaining < self._attempt_timeout
        timeout = (
            aiohttp.ClientTimeout(total=remaining, ceil_threshold=math.inf)
            if cut_by_deadline
            else self._timeout
        )
        try:
            async with session.post(
                self._url, data=data, headers=self._headers, timeout=timeout
            ) as response:
                raw = await response.read()
                status = response.status
                headers = response.headers
                if not 200 <= status < 300:
                    raise _http_error(status, raw, headers)
        except TimeoutError as exc:  # before ClientError: aiohttp's timeouts are both
            if cut_by_deadline:
                raise LLMError(
                    "chat completion deadline passed", code="deadline_exceeded", retryable=True
                ) from exc
            raise LLMError(
                f"chat completion attempt timed out after {self._attempt_timeout:g}s",
                code="timeout",
                retryable=True,
            ) from exc
        except aiohttp.ClientError as exc:
            raise LLMError(
                "could not reach the LLM provider",
                code="connection_error",
                details=type(exc).__name__,
                retryable=True,
            ) from exc
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise _bad_response(status, "body is not JSON") from exc
        if isinstance(payload, dict) and "error" in payload and "choices" not in payload:
            # Some gateways answer 200 with an error object.
            code, details = _provider_error(payload)
            raise LLMError(
                "chat completion answered with an error",
                status=status,
                code=code or "bad_response",
                details=details,
                retryable=code not in _NOT_RETRYABLE_CODES,
            )
        return payload, headers

    def _completion(self, payload: Any, model: str, latency: float, attempts: int) -> Completion:
        try:
            choice = payload["choices"][0]
            message = choice["message"]
            if not isinstance(message, dict):
                raise TypeError("message is not an object")
        except (KeyError, IndexError, TypeError) as exc:
            raise LLMError(
                "chat completion answer has no message",
                code="bad_response",
                details=f"{type(exc).__name__}: {exc}",
                retryable=True,
            ) from exc
        tool_calls = message.get("tool_calls")
        finish_reason = choice.get("finish_reason")
        answered_model = payload.get("model")
        usage = parse_usage(payload.get("usage"))
        price = self._prices.get(model)
        if price is None and isinstance(answered_model, str):
            price = self._prices.get(answered_model)
        return Completion(
            text=_message_text(message.get("content")),
            model=answered_model if isinstance(answered_model, str) else model,
            usage=usage,
            cost_usd=usage_cost(usage, price) if price is not None else 0.0,
            priced=price is not None,
            latency_s=latency,
            attempts=attempts,
            finish_reason=finish_reason if isinstance(finish_reason, str) else None,
            tool_calls=tool_calls if isinstance(tool_calls, list) else [],
        )
