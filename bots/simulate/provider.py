"""A simulated OpenAI-compatible LLM provider with the limits, latency and failures of a real one.

``POST /v1/chat/completions`` (non-streaming) answers with text, also when the request offers
tools. What makes it a provider at peak rather than an echo:

- latency drawn from a lognormal distribution given by its median and 95th percentile;
- requests per minute and tokens per minute over a sliding minute window, plus calls in
  flight; a request over any of them gets 429 with ``Retry-After`` (and ``retry-after-ms``),
  and is not counted. Tokens are reserved on arrival as prompt + ``max_tokens`` (as OpenAI
  counts them) and corrected to the real use once answered;
- ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` on every answer, so a client can
  slow down before it is refused;
- a share of 5xx errors (after the latency: the provider worked, then failed);
- usage with ``prompt_tokens_details.cached_tokens`` from a prefix cache: the leading messages
  (and tool definitions) of a request that an earlier request already sent count as cached,
  as a provider's prompt cache bills a stable prefix.

Everything is counted per second of the run for the report.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

DEFAULT_MAX_TOKENS: Final = 4096  # what a request without max_tokens reserves
WINDOW_S: Final = 60.0
PREFIX_CACHE_ENTRIES: Final = 200_000
Z95: Final = 1.6449  # the standard normal's 95th percentile
ANSWER_TEXT: Final = (
    "Thank you for reaching out to us. I understand how important this is, and I am happy to "
    "help. Here is what you can do: open your account, go to the orders section and follow "
    "the steps shown there; the change is confirmed by email within a few minutes. If "
    "anything is unclear, just reply to this message and we will sort it out together."
)
ANSWER_WORDS: Final = tuple(ANSWER_TEXT.split())


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """Limits (0 = none), latency and failures of the simulated provider."""

    rpm: int = 0
    tpm: int = 0
    concurrency: int = 0
    latency_median_s: float = 1.5
    latency_p95_s: float = 4.0
    error_rate: float = 0.0
    completion_tokens_median: int = 60
    api_key: str = field(default_factory=lambda: "sk-sim-" + secrets.token_hex(12))
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.latency_median_s <= self.latency_p95_s:
            raise ValueError("latency: need 0 < median <= p95")
        if not 0 <= self.error_rate < 1:
            raise ValueError("error rate must be in [0, 1)")
        if min(self.rpm, self.tpm, self.concurrency) < 0:
            raise ValueError("limits must be >= 0")


@dataclass(slots=True)
class ProviderSecond:
    """What the provider saw in one second of the run (calls counted when they arrived)."""

    calls: int = 0  # every request
    admitted: int = 0  # counted against the limits: not refused with 429
    throttled: int = 0  # 429
    errors: int = 0  # 5xx
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    in_flight_max: int = 0


@dataclass(slots=True)
class _Use:
    at: float
    tokens: int
    expired: bool = False


class MinuteWindow:
    """Requests and tokens admitted within the last minute (sliding), with corrections."""

    def __init__(self, span_s: float = WINDOW_S) -> None:
        self.span_s = span_s
        self.requests = 0
        self.tokens = 0
        self._uses: deque[_Use] = deque()

    def _expire(self, now: float) -> None:
        while self._uses and self._uses[0].at <= now - self.span_s:
            use = self._uses.popleft()
            use.expired = True
            self.requests -= 1
            self.tokens -= use.tokens

    def wait_s(self, now: float, tokens: int, rpm: int, tpm: int) -> float:
        """0 when one more request of ``tokens`` fits both limits now, else the seconds
        until it would (``span_s`` when it can never fit: larger than the whole limit)."""
        self._expire(now)
        wait = 0.0
        if rpm and self.requests >= rpm:
            wait = self._uses[self.requests - rpm].at + self.span_s - now
        if tpm and self.tokens + tokens > tpm:
            if tokens > tpm:
                return self.span_s
            freed, excess = 0, self.tokens + tokens - tpm
            for use in self._uses:
                freed += use.tokens
                if freed >= excess:
                    wait = max(wait, use.at + self.span_s - now)
                    break
        return max(wait, 0.0)

    def admit(self, now: float, tokens: int) -> _Use:
        use = _Use(now, tokens)
        self._uses.append(use)
        self.requests += 1
        self.tokens += tokens
        return use

    def correct(self, use: _Use, tokens: int) -> None:
        """Replace a reservation by the tokens really used (nothing once it left the window)."""
        if not use.expired:
            self.tokens += tokens - use.tokens
            use.tokens = tokens

    def reset_s(self, now: float) -> float:
        """Seconds until the oldest use leaves the window (0 when empty)."""
        return max(0.0, self._uses[0].at + self.span_s - now) if self._uses else 0.0


class PrefixCache:
    """Which request prefixes were sent before: whole leading messages, tools first."""

    def __init__(self, capacity: int = PREFIX_CACHE_ENTRIES) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def cached_tokens(self, parts: list[tuple[bytes, int]]) -> int:
        """Tokens of the longest known prefix of ``parts`` ((cumulative digest, tokens) per
        part); all prefixes are known afterwards."""
        cached, hit = 0, True
        for digest, tokens in parts:
            if hit and digest in self._seen:
                self._seen.move_to_end(digest)
                cached += tokens
            else:
                hit = False
                self._seen[digest] = None
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return cached


def prompt_parts(payload: dict[str, Any]) -> list[tuple[bytes, int]]:
    """The request as prefix parts: (digest of everything up to this part, its tokens).

    About 4 characters a token, as providers' tokenizers give for English; the tools count
    (providers put their definitions into the prompt).
    """
    chunks: list[str] = [json.dumps(payload.get("model", ""))]
    if payload.get("tools"):
        chunks.append(json.dumps(payload["tools"], sort_keys=True, ensure_ascii=False))
    chunks += [
        json.dumps(m, sort_keys=True, ensure_ascii=False) for m in payload.get("messages", [])
    ]
    running = hashlib.blake2b(digest_size=16)
    parts: list[tuple[bytes, int]] = []
    for chunk in chunks:
        running.update(chunk.encode())
        parts.append((running.copy().digest(), max(1, len(chunk) // 4)))
    return parts


def _error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _duration(seconds: float) -> str:
    """A reset as OpenAI writes it: ``850ms``, ``12s``, ``1m3s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


class SimulatedProvider:
    """The provider's HTTP app and its per-second record (see the module docstring)."""

    def __init__(self, config: ProviderConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.window = MinuteWindow()
        self.cache = PrefixCache()
        self.seconds: list[ProviderSecond] = []
        self.in_flight = 0
        self.unauthorized = 0
        self._rng = random.Random(config.seed)
        self._mu = math.log(config.latency_median_s)
        self._sigma = math.log(config.latency_p95_s / config.latency_median_s) / Z95

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        return app

    def second(self, at: float) -> ProviderSecond:
        index = max(0, int(at))
        while len(self.seconds) <= index:
            self.seconds.append(ProviderSecond())
        return self.seconds[index]

    def latency_s(self) -> float:
        return min(120.0, self._rng.lognormvariate(self._mu, self._sigma))

    def _headers(self, now: float) -> dict[str, str]:
        c, w = self.config, self.window
        headers: dict[str, str] = {}
        reset = _duration(w.reset_s(now))
        if c.rpm:
            headers["x-ratelimit-limit-requests"] = str(c.rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(0, c.rpm - w.requests))
            headers["x-ratelimit-reset-requests"] = reset
        if c.tpm:
            headers["x-ratelimit-limit-tokens"] = str(c.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, c.tpm - w.tokens))
            headers["x-ratelimit-reset-tokens"] = reset
        return headers

    async def _chat_completions(self, request: web.Request) -> web.Response:
        now = self.clock()
        record = self.second(now)
        record.calls += 1
        if request.headers.get("Authorization") != f"Bearer {self.config.api_key}":
            self.unauthorized += 1
            body = _error("Incorrect API key provided", "invalid_request_error")
            return web.json_response(body, status=401)
        try:
            payload = await request.json()
            if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
                raise ValueError("no messages")
        except ValueError:
            body = _error("body must be JSON with messages", "invalid_request_error")
            return web.json_response(body, status=400)
        parts = prompt_parts(payload)
        prompt_tokens = sum(tokens for _, tokens in parts)
        max_tokens = int(payload.get("max_tokens") or DEFAULT_MAX_TOKENS)
        refused = self._refusal(now, prompt_tokens + max_tokens)
        if refused is not None:
            record.throttled += 1
            return refused
        use = self.window.admit(now, prompt_tokens + max_tokens)
        record.admitted += 1
        headers = self._headers(now)
        self.in_flight += 1
        record.in_flight_max = max(record.in_flight_max, self.in_flight)
        c = self.config
        try:
            await asyncio.sleep(self.latency_s())
            if self._rng.random() < c.error_rate:
                record.errors += 1
                self.window.correct(use, prompt_tokens)
                body = _error("The server had an error processing your request", "server")
                return web.json_response(body, status=500, headers=headers)
            completion_tokens = min(
                max_tokens,
                max(1, round(self._rng.lognormvariate(0, 0.5) * c.completion_tokens_median)),
            )
            cached = self.cache.cached_tokens(parts)
            self.window.correct(use, prompt_tokens + completion_tokens)
            record.prompt_tokens += prompt_tokens
            record.cached_tokens += cached
            record.completion_tokens += completion_tokens
            body = self._completion(payload, prompt_tokens, cached, completion_tokens, max_tokens)
            return web.json_response(body, headers=headers)
        finally:
            self.in_flight -= 1

    def _refusal(self, now: float, tokens: int) -> web.Response | None:
        """The 429 for a request over a limit, or None when it may go ahead."""
        c = self.config
        wait = self.window.wait_s(now, tokens, c.rpm, c.tpm)
        kind = "requests or tokens per minute"
        if not wait and c.concurrency and self.in_flight >= c.concurrency:
            wait, kind = 1.0, "concurrent requests"
        if not wait:
            return None
        headers = self._headers(now)
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        headers["retry-after-ms"] = str(math.ceil(wait * 1000))
        body = _error(f"Rate limit reached for {kind}", "requests", "rate_limit_exceeded")
        return web.json_response(body, status=429, headers=headers)

    def _completion(
        self,
        payload: dict[str, Any],
        prompt_tokens: int,
        cached: int,
        completion_tokens: int,
        max_tokens: int,
    ) -> dict[str, Any]:
        words = max(3, completion_tokens * 3 // 4)
        text = " ".join(ANSWER_WORDS[i % len(ANSWER_WORDS)] for i in range(words))
        return {
            "id": "chatcmpl-sim-" + secrets.token_hex(6),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(payload.get("model", "")),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length" if completion_tokens >= max_tokens else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached},
            },
        }
