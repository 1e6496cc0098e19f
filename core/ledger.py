"""Figures every process adds to and anyone can read: the queue dashboard (``/peakdesk stats``).

Kept in Redis, so the dashboard shows the whole deployment, not one process: answers per source
and LLM cost per UTC day (counted by the queue's scripts as replies are stored), LLM calls per
minute, and the latest queue waits per priority.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

from core.keys import PRIORITIES, Keys

WAIT_SAMPLES: Final = 1000  # per priority: the p95 of the latest waits
LLM_SOURCE: Final = "llm"


def utc_day(at: float | None = None) -> str:
    return time.strftime("%Y%m%d", time.gmtime(time.time() if at is None else at))


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` in 0-1) of ``values``, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class Dashboard:
    """The state of the queue and the day, as ``/peakdesk stats`` shows it."""

    depth: Mapping[int, int]
    p95_wait_s: Mapping[int, float | None]
    llm_calls_last_minute: int
    answers_today: Mapping[str, int]
    cost_today_usd: float
    open_handovers: int

    @property
    def answered_today(self) -> int:
        return sum(self.answers_today.values())

    @property
    def without_llm_share(self) -> float | None:
        """Share of today's answers that needed no LLM call (cache, templates, people...)."""
        total = self.answered_today
        return None if not total else 1 - self.answers_today.get(LLM_SOURCE, 0) / total


class Ledger:
    """Shared counters in Redis (see the module docstring)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def record_llm_call(self, cost_usd: float) -> None:
        now = time.time()
        minute = self.keys.stats_minute(int(now // 60))
        day = self.keys.stats_day(utc_day(now))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.incr(minute)
            pipe.expire(minute, 3600)
            pipe.hincrbyfloat(day, "cost_usd", cost_usd)
            pipe.hincrby(day, "llm_calls", 1)
            pipe.expire(day, 8 * 24 * 3600)
            await pipe.execute()

    async def record_waits(self, waits: Mapping[int, Sequence[float]]) -> None:
        """Add the waits (seconds) of messages just taken from the queue, per priority."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for priority, values in waits.items():
                if values:
                    key = self.keys.waits(priority)
                    pipe.lpush(key, *(round(v * 1000) for v in values))
                    pipe.ltrim(key, 0, WAIT_SAMPLES - 1)
            await pipe.execute()

    async def dashboard(self, depth: Mapping[int, int]) -> Dashboard:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for priority in PRIORITIES:
                pipe.lrange(self.keys.waits(priority), 0, -1)
            pipe.get(self.keys.stats_minute(int(now // 60) - 1))
            pipe.hgetall(self.keys.stats_day(utc_day(now)))
            pipe.zcard(self.keys.handovers_open)
            *waits, calls, day, open_handovers = await pipe.execute()
        p95 = {
            priority: (
                None if (p := percentile([float(v) for v in raw], 0.95)) is None else p / 1000
            )
            for priority, raw in zip(PRIORITIES, waits, strict=True)
        }
        answers = {
            name: int(value) for name, value in day.items() if name not in ("cost_usd", "llm_calls")
        }
        return Dashboard(
            depth=depth,
            p95_wait_s=p95,
            llm_calls_last_minute=int(calls or 0),
            answers_today=answers,
            cost_today_usd=float(day.get("cost_usd") or 0.0),
            open_handovers=int(open_handovers),
        )
