"""Peak mode: how long answers will take, the first response and the degradation ladder.

Every process reads the same few figures from Redis once a second (queue depth per priority,
answers stored so far today, the mode staff forced, tokens spent this hour and day) and
derives from them, on its own and alike:

- the **estimated wait** of a new message for its full answer, per priority: the messages
  ahead of it (its priority and the more urgent ones, in progress included) over the rate
  queue entries are answered at, less the arrivals of more urgent messages that will be served
  before it; plus the burst window and the time an answer takes (the 90th percentile of the
  recent LLM calls). Answers given at admission (instant templates) never count: they leave
  the queue's pace unchanged;
- the **acknowledgement**: when that wait exceeds ``first_response_s``, a new message gets an
  immediate reply with its ticket and an honest estimate (queued with it, atomically, by the
  admission script), and its full answer later; while its conversation has one out, a short
  form ("we will answer this along with your earlier message");
- the **ladder level**, by pressure (the estimated wait against the target of each priority)
  and by budget (the share of the hourly and daily token budgets spent), or as staff forced
  it (``/peakdesk peak``). It climbs at once and comes down one step per ``cool_down_s``:

  ====  =========================================================================
  0     normal
  1     lean: shorter answers (``lean_max_tokens``) and only the last turns of history
  2     + the cheaper fallback model, when one is configured
  3     + priority-2 messages a template answers get the template, without the LLM
  4     + every priority-2 message is acknowledged at once; they are answered only from
        capacity the urgent ones leave (the queue always serves the most urgent first)
  ====  =========================================================================
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.aio import wait_event
from core.keys import PRIORITIES, Keys
from core.ledger import DRAINED, NON_ANSWER_FIELDS, add_counters, day_keys, utc_day
from core.metrics import Metrics
from core.models import language
from core.queue import GROUP

log = logging.getLogger("peakdesk.peak")

LEVELS: Final = (
    "normal",
    "lean answers",
    "cheaper model",
    "templates for priority 2",
    "acknowledgements for priority 2",
)
TOP: Final = len(LEVELS) - 1
MODES: Final = ("auto", "on", "off", *(str(n) for n in range(len(LEVELS))))
ON_LEVEL: Final = 2  # "on" before the event: lean answers on the cheaper model, at least
# Pressure (the largest estimated wait / target over the priorities) at which each level starts.
PRESSURE_STEPS: Final = (0.25, 0.5, 1.0, 1.5)
# Spent share of a token budget at which the ladder climbs to at least level 2, and 3.
BUDGET_STEPS: Final = (0.8, 0.95)
LEAN_HISTORY_TURNS: Final = 2
SMOOTHING: Final = 0.6  # of the previous rate, against the last second's
MIN_SHARE: Final = 0.1  # of the answer rate a priority gets however much overtakes it
LATENCY_SAMPLES: Final = 500
DEFAULT_SERVICE_S: Final = 2.0

ACK_TEXT = {
    "en": (
        "Thanks, we have your message (ticket {ticket}). Many customers are writing to us right"
        " now: we expect to answer within {wait}. There is no need to send it again."
    ),
    "zh": "已收到您的消息（工单号 {ticket}）。当前咨询量较大，预计 {wait} 内回复您，无需重复发送。",
}


FOLLOW_UP_TEXT = {
    "en": "Got it (ticket {ticket}): we will answer this along with your earlier message.",
    "zh": "已收到（工单号 {ticket}），我们会连同您之前的消息一起回复。",
}


def describe_wait(seconds: float, locale: str | None) -> str:
    """An honest, rounded-up wait: "1 minute", "15 minutes", "2 hours" (or in Chinese)."""
    zh = language(locale) == "zh"
    minutes = max(1, math.ceil(seconds / 60))
    if minutes > 15:
        minutes = math.ceil(minutes / 5) * 5
    if minutes < 120:
        return f"{minutes} 分钟" if zh else f"{minutes} minute{'s' * (minutes > 1)}"
    hours = math.ceil(minutes / 60)
    return f"{hours} 小时" if zh else f"{hours} hours"


@dataclass(frozen=True, slots=True)
class Plan:
    """How to answer a message at the current level (see the module docstring)."""

    level: int
    max_tokens: int | None  # None: the configured default
    history_turns: int | None  # None: all the history kept
    model: str | None  # None: the configured model
    templates_first: bool  # answer from a template when one covers the message


@dataclass(frozen=True, slots=True)
class Budget:
    """Token budgets per hour and per UTC day (None: no budget)."""

    tokens_per_hour: int | None = None
    tokens_per_day: int | None = None

    def spent_share(self, hour_tokens: int, day_tokens: int) -> float:
        shares = [
            spent / limit
            for spent, limit in (
                (hour_tokens, self.tokens_per_hour),
                (day_tokens, self.tokens_per_day),
            )
            if limit
        ]
        return max(shares, default=0.0)


def level_for(pressure: float, budget_share: float) -> int:
    """The ladder level the pressure and the budget call for."""
    level = sum(pressure >= step for step in PRESSURE_STEPS)
    if budget_share >= BUDGET_STEPS[1]:
        level = max(level, 3)
    elif budget_share >= BUDGET_STEPS[0]:
        level = max(level, 2)
    return level


class PeakMonitor:
    """Estimated waits, acknowledgements and the ladder level (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        first_response_s: float = 5.0,
        targets_s: Sequence[float] = (30.0, 120.0, 600.0),
        mode: str = "auto",
        slots: int = 50,
        budget: Budget | None = None,
        lean_max_tokens: int = 200,
        fallback_model: str | None = None,
        metrics: Metrics | None = None,
        refresh_s: float = 1.0,
        cool_down_s: float = 30.0,
        burst_window_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"peak mode: one of {', '.join(MODES)}")
        self.redis = redis
        self.keys = keys
        self.first_response_s = first_response_s
        self.targets_s = tuple(targets_s)
        self.mode = mode  # the setting; staff may force another in Redis
        self.slots = slots
        self.budget = budget or Budget()
        self.lean_max_tokens = lean_max_tokens
        self.fallback_model = fallback_model
        self.metrics = metrics
        self.refresh_s = refresh_s
        self.cool_down_s = cool_down_s
        self._clock = clock
        self.burst_window_s = burst_window_s
        self.depths: dict[int, int] = dict.fromkeys(PRIORITIES, 0)
        # Of those, not taken by a worker yet (queued behind the ones in progress).
        self.waiting: dict[int, int] = dict.fromkeys(PRIORITIES, 0)
        # Per priority, the whole deployment, smoothed: queue entries taken out (answered by
        # workers) and put in, per second.
        self.drain: dict[int, float] = dict.fromkeys(PRIORITIES, 0.0)
        self.arrivals: dict[int, float] = dict.fromkeys(PRIORITIES, 0.0)
        self.forced: str | None = None  # what staff set with /peakdesk peak
        self.budget_share = 0.0
        self.level = 0
        self._last: tuple[float, dict[int, int], dict[int, int]] | None = None
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        # How long an answer takes once started: the 90th percentile of this process's recent
        # LLM calls, taken at each refresh (a default before it made any: a gateway makes none).
        self.service_s = DEFAULT_SERVICE_S
        self._lower_since: float | None = None

    # -- reading ------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """Queue entries answered per second, all priorities, the whole deployment."""
        return sum(self.drain.values())

    def record_latency(self, seconds: float) -> None:
        self._latencies.append(seconds)

    def estimated_wait(self, priority: int) -> float:
        """Seconds until a message of ``priority`` admitted now gets its full answer.

        The messages ahead of it (its priority and the more urgent ones, not yet taken by a
        worker) leave at the measured rate less what more urgent arrivals will take ahead of
        it (the queue serves the most urgent first); then its own turn: the burst window and
        the time an answer takes. Messages in progress are not ahead of it: counting them,
        and then the answer time again, made every message at an ordinary load look 5 s away
        (found by tests/faults: 17% acknowledged for nothing).
        """
        ahead = sum(n for p, n in self.waiting.items() if p <= priority)
        rate = self.rate
        if not ahead:
            queued = 0.0
        elif rate > 0:
            overtaking = sum(a for p, a in self.arrivals.items() if p < priority)
            queued = ahead / max(rate - overtaking, MIN_SHARE * rate)
        else:  # nothing answered lately: only a queue the workers can all start is short
            queued = 0.0 if ahead < self.slots else math.inf
        return self.burst_window_s + queued + self.service_s

    @property
    def pressure(self) -> float:
        """The largest share of its target a priority's estimated wait takes."""
        return max(
            self.estimated_wait(p) / target
            for p, target in zip(PRIORITIES, self.targets_s, strict=True)
        )

    @property
    def effective_mode(self) -> str:
        return self.forced or self.mode

    @property
    def budget_exhausted(self) -> bool:
        return self.budget_share >= 1.0

    def plan(self, priority: int) -> Plan:
        level = self.level
        return Plan(
            level=level,
            max_tokens=self.lean_max_tokens if level >= 1 else None,
            history_turns=LEAN_HISTORY_TURNS if level >= 1 else None,
            model=self.fallback_model if level >= 2 else None,
            templates_first=level >= 3 and priority >= 2,
        )

    def acknowledgement(self, priority: int, locale: str | None) -> str | None:
        """The acknowledgement for a new message (``{ticket}`` left to fill), or None when
        its full answer will come within ``first_response_s``."""
        if self.first_response_s <= 0:
            return None
        wait = self.estimated_wait(priority)
        always = self.level >= TOP and priority >= 2
        if wait <= self.first_response_s and not always:
            return None
        if math.isinf(wait):  # no answer rate measured yet: the slowest target is honest
            wait = self.targets_s[priority]
        return ACK_TEXT[language(locale)].replace("{wait}", describe_wait(wait, locale))

    def follow_up(self, locale: str | None) -> str:
        """The short acknowledgement of a conversation that has one out already: each message
        hears back at once, without the same long notice again."""
        return FOLLOW_UP_TEXT[language(locale)]

    def summary(self) -> str:
        """One line for the dashboard: mode, level, estimated waits."""
        waits = " · ".join(
            f"P{p} " + ("?" if math.isinf(w) else f"{w:.0f} s")
            for p, w in ((p, self.estimated_wait(p)) for p in PRIORITIES)
        )
        return (
            f"{self.effective_mode}, level {self.level} ({LEVELS[self.level]}); "
            f"estimated waits {waits}"
        )

    async def force(self, mode: str) -> None:
        """Set the mode for every process (``/peakdesk peak``); it outlasts restarts."""
        if mode not in MODES:
            raise ValueError(f"peak mode: one of {', '.join(MODES)}")
        await self.redis.set(self.keys.peak_mode, mode)
        await self.refresh()

    def admitted(self, priority: int, acked: bool) -> None:
        """Count a message this process queued until the next refresh reads the queue: the
        first second of a spike is acknowledged too."""
        self.depths[priority] += 1
        self.waiting[priority] += 1
        if acked and self.metrics is not None:
            self.metrics.acks.labels(str(priority)).inc()

    # -- refreshing ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except RedisError as exc:  # the last figures stay; the queue reports the outage
                log.debug("peak figures not refreshed (%s)", type(exc).__name__)
            await wait_event(stop, self.refresh_s)

    async def refresh(self) -> None:
        now = time.time()
        days = day_keys(self.keys, utc_day(now))
        streams = [stream for lane in self.keys.lanes for stream in lane.streams]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.peak_mode)
            pipe.get(self.keys.budget(f"h{int(now // 3600)}"))
            pipe.get(self.keys.budget(f"d{utc_day(now)}"))
            for key in days:
                pipe.hgetall(key)
            for stream in streams:
                pipe.xlen(stream)
            for stream in streams:
                pipe.xpending(stream, GROUP)
            replies = await pipe.execute(raise_on_error=False)
        # XPENDING fails (NOGROUP) on a stream no group reads yet: none pending there. Any
        # other failure is the store's.
        checked, pending = replies[: -len(streams)], replies[-len(streams) :]
        if error := next((r for r in checked if isinstance(r, Exception)), None):
            raise error
        forced, hour_tokens, day_tokens, *found = checked
        day = add_counters(found[: len(days)])
        lengths = found[len(days) :]
        waiting = [int(n) - _pending(p) for n, p in zip(lengths, pending, strict=True)]
        self.depths = {p: sum(int(n) for n in lengths[p :: len(PRIORITIES)]) for p in PRIORITIES}
        self.waiting = {p: max(0, sum(waiting[p :: len(PRIORITIES)])) for p in PRIORITIES}
        self._measure_rates(self._clock(), day)
        if self._latencies:
            ordered = sorted(self._latencies)
            self.service_s = ordered[int(0.9 * (len(ordered) - 1))]
        self.forced = forced if forced in MODES else None
        self.budget_share = self.budget.spent_share(int(hour_tokens or 0), int(day_tokens or 0))
        self._set_level(self._clock())
        if self.metrics is not None:
            self._export(day)

    def _measure_rates(self, at: float, day: Mapping[str, str]) -> None:
        drained = {p: int(day.get(f"{DRAINED}{p}") or 0) for p in PRIORITIES}
        if self._last is not None and at > self._last[0]:
            then, depths, before = self._last
            elapsed = at - then
            for p in PRIORITIES:
                out = (drained[p] - before[p]) / elapsed
                if out < 0:  # a new UTC day: its counters start again
                    continue
                came = out + (self.depths[p] - depths[p]) / elapsed
                self.drain[p] = SMOOTHING * self.drain[p] + (1 - SMOOTHING) * out
                self.arrivals[p] = SMOOTHING * self.arrivals[p] + (1 - SMOOTHING) * max(0, came)
        self._last = (at, dict(self.depths), drained)

    def _wanted(self) -> int:
        mode = self.effective_mode
        if mode.isdigit():
            return int(mode)
        floor = level_for(0.0, self.budget_share)  # the budget binds in every mode
        if mode == "off":
            return floor
        wanted = level_for(self.pressure, self.budget_share)
        return max(wanted, ON_LEVEL) if mode == "on" else wanted

    def _set_level(self, at: float) -> None:
        wanted = self._wanted()
        if wanted >= self.level or self.effective_mode not in ("auto", "on"):
            self._lower_since = None
        elif self._lower_since is None:
            self._lower_since = at
            return
        elif at - self._lower_since >= self.cool_down_s:  # one step down per cool-down
            wanted, self._lower_since = self.level - 1, at
        else:
            return
        if wanted != self.level:
            log.info("peak level %d (%s)", wanted, LEVELS[wanted])
        self.level = wanted

    def _export(self, day: Mapping[str, str]) -> None:
        assert self.metrics is not None
        self.metrics.peak_level.set(self.level)
        for priority in PRIORITIES:
            wait = self.estimated_wait(priority)
            self.metrics.estimated_wait.labels(str(priority)).set(-1 if math.isinf(wait) else wait)
        prompt = float(day.get("prompt_tokens") or 0)
        answered = sum(int(v) for k, v in day.items() if k not in NON_ANSWER_FIELDS)
        if prompt:
            self.metrics.cached_token_share.set(float(day.get("cached_tokens") or 0) / prompt)
        if answered:
            self.metrics.cost_per_answer.set(float(day.get("cost_usd") or 0) / answered)


def _pending(summary: object) -> int:
    """Entries a worker has taken and not finished, from XPENDING's summary (none when the
    stream has no consumer group yet)."""
    if isinstance(summary, dict):
        return int(summary.get("pending") or 0)
    return 0
