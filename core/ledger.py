"""Figures every process adds to and anyone can read: the queue dashboard (``/peakdesk stats``).

Kept in Redis, so the dashboard shows the whole deployment, not one process: answers per source
and LLM cost per UTC day (counted by the queue's scripts as replies are stored), LLM calls per
minute, and the latest queue waits per priority.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from core.aio import wait_event
from core.keys import PRIORITIES, Keys
from core.store import lua_script

log = logging.getLogger("peakdesk.ledger")

WAIT_SAMPLES: Final = 1000  # per priority: the p95 of the latest waits
LLM_SOURCE: Final = "llm"
DRAINED: Final = "drained:"  # + priority: queue entries answered (by the queue's scripts)
# Fields of the day's counters that are not answers per source.
NON_ANSWER_FIELDS: Final = frozenset(
    (
        "cost_usd",
        "llm_calls",
        "prompt_tokens",
        "cached_tokens",
        "completion_tokens",
        *(f"{DRAINED}{p}" for p in PRIORITIES),
    )
)


def utc_day(at: float | None = None) -> str:
    return time.strftime("%Y%m%d", time.gmtime(time.time() if at is None else at))


def day_keys(keys: Keys, day: str) -> list[str]:
    """The keys holding a day's counters: the shared one, and each lane's (with lanes)."""
    lanes = [lane.stats_day(day) for lane in keys.lanes] if keys.shards > 1 else []
    return [keys.stats_day(day), *lanes]


def add_counters(hashes: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The day's counters of several keys added up, as Redis would hold them in one."""
    total: dict[str, float] = {}
    for counters in hashes:
        for name, value in counters.items():
            total[name] = total.get(name, 0.0) + float(value)
    return {name: str(int(v)) if v.is_integer() else repr(v) for name, v in total.items()}


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


async def count_open_handovers(script: AsyncScript, keys: Keys) -> int:
    """The hand-overs waiting for or owned by people, in every lane, by ``script``
    (``open_handovers.lua``, which drops the open sets' members whose record expired: a TTL
    cannot remove them). One call per lane: a cluster pipeline does not load scripts."""
    counts = await asyncio.gather(
        *(script(keys=[lane.handovers_open], args=[lane.handover_prefix]) for lane in keys.lanes)
    )
    return sum(int(n) for n in counts)


class Ledger:
    """Shared counters in Redis (see the module docstring).

    What a worker adds (LLM calls and cost, queue waits) is gathered in memory and written
    once a second by :meth:`run` (one round trip, not one per message: it cost the worker path
    half a millisecond a message). A crash loses at most that second of dashboard figures.
    """

    def __init__(self, redis: Redis, keys: Keys, *, flush_interval_s: float = 1.0) -> None:
        self.redis = redis
        self.keys = keys
        self.flush_interval_s = flush_interval_s
        self._calls: dict[tuple[int, str], int] = {}  # (minute, day) -> LLM calls
        self._cost: dict[str, float] = {}  # day -> USD
        self._tokens: dict[tuple[int, str], list[int]] = {}  # (hour, day) -> prompt, cached, out
        self._waits: dict[int, list[int]] = {}  # priority -> waits in ms, newest last
        # Counts a lane's open hand-overs, dropping those whose record expired.
        self._open_handovers = redis.register_script(lua_script("open_handovers.lua"))

    def record_llm_call(
        self,
        cost_usd: float,
        prompt_tokens: int = 0,
        cached_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """One LLM call: its cost and tokens (the token budgets count prompt + completion)."""
        now = time.time()
        slot = (int(now // 60), utc_day(now))
        self._calls[slot] = self._calls.get(slot, 0) + 1
        self._cost[slot[1]] = self._cost.get(slot[1], 0.0) + cost_usd
        tokens = self._tokens.setdefault((int(now // 3600), slot[1]), [0, 0, 0])
        tokens[0] += prompt_tokens
        tokens[1] += cached_tokens
        tokens[2] += completion_tokens

    def record_waits(self, waits: Mapping[int, Sequence[float]]) -> None:
        """Add the waits (seconds) of messages just taken from the queue, per priority."""
        for priority, values in waits.items():
            kept = self._waits.setdefault(priority, [])
            kept.extend(round(v * 1000) for v in values)
            del kept[:-WAIT_SAMPLES]

    async def run(self, stop: asyncio.Event) -> None:
        """Write what was gathered every ``flush_interval_s`` until ``stop``, then once more."""
        while not stop.is_set():
            await wait_event(stop, self.flush_interval_s)
            await self.flush()

    async def flush(self) -> None:
        calls, cost, waits, tokens = self._calls, self._cost, self._waits, self._tokens
        if not (calls or cost or waits or tokens):
            return
        self._calls, self._cost, self._waits, self._tokens = {}, {}, {}, {}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for (minute, day), count in calls.items():
                    pipe.incrby(self.keys.stats_minute(minute), count)
                    pipe.expire(self.keys.stats_minute(minute), 3600)
                    pipe.hincrby(self.keys.stats_day(day), "llm_calls", count)
                for day, usd in cost.items():
                    pipe.hincrbyfloat(self.keys.stats_day(day), "cost_usd", usd)
                    pipe.expire(self.keys.stats_day(day), 8 * 24 * 3600)
                for (hour, day), (prompt, cached, completion) in tokens.items():
                    stats = self.keys.stats_day(day)
                    pipe.hincrby(stats, "prompt_tokens", prompt)
                    pipe.hincrby(stats, "cached_tokens", cached)
                    pipe.hincrby(stats, "completion_tokens", completion)
                    for window, ttl in ((f"h{hour}", 2 * 3600), (f"d{day}", 2 * 24 * 3600)):
                        pipe.incrby(self.keys.budget(window), prompt + completion)
                        pipe.expire(self.keys.budget(window), ttl)
                for priority, values in waits.items():
                    key = self.keys.waits(priority)
                    pipe.lpush(key, *values)
                    pipe.ltrim(key, 0, WAIT_SAMPLES - 1)
                await pipe.execute()
        except RedisError as exc:  # dashboard figures: dropped, never worth failing for
            log.debug("ledger flush failed (%s)", type(exc).__name__)

    async def dashboard(self, depth: Mapping[int, int]) -> Dashboard:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for priority in PRIORITIES:
                pipe.lrange(self.keys.waits(priority), 0, -1)
            pipe.get(self.keys.stats_minute(int(now // 60) - 1))
            days = day_keys(self.keys, utc_day(now))
            for key in days:
                pipe.hgetall(key)
            found = await pipe.execute()
        waits, calls = found[: len(PRIORITIES)], found[len(PRIORITIES)]
        day = add_counters(found[len(PRIORITIES) + 1 :])
        open_handovers = await count_open_handovers(self._open_handovers, self.keys)
        p95 = {
            priority: (
                None if (p := percentile([float(v) for v in raw], 0.95)) is None else p / 1000
            )
            for priority, raw in zip(PRIORITIES, waits, strict=True)
        }
        answers = {name: int(value) for name, value in day.items() if name not in NON_ANSWER_FIELDS}
        return Dashboard(
            depth=depth,
            p95_wait_s=p95,
            llm_calls_last_minute=int(calls or 0),
            answers_today=answers,
            cost_today_usd=float(day.get("cost_usd") or 0.0),
            open_handovers=open_handovers,
        )
