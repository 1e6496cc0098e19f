"""From what the gateway sent and received to the report's figures and verdicts.

Everything is measured from outside peakdesk, as a gateway and the provider saw it; only the
queue depth and the cost come from peakdesk's ``/metrics``. Definitions (the report repeats
them):

- time to first response: from a message's first send attempt to the first callback of its
  conversation arriving after it (an acknowledgement or an answer);
- time to full answer: to the first callback other than an acknowledgement whose
  ``message_ids`` contain it;
- lost: accepted (202) and no full answer when the run ended;
- duplicate replies: messages covered by more than one distinct ``reply_id`` (answers, not
  acknowledgements); a redelivery is the same ``reply_id`` arriving again;
- backlog: the seconds in which at least ``backlog_threshold`` messages were queued or in
  progress (5 s of the provider's request limit): while that many wait, a client pacing
  itself well keeps the provider at its limit.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bots.simulate.load import LoadSecond, SentMessage
from bots.simulate.peakdesk import MetricsSample
from bots.simulate.provider import ProviderConfig, ProviderSecond
from bots.simulate.scenario import Scenario
from bots.simulate.sink import ReceivedReply
from bots.simulate.targets import FIRST_RESPONSE_P99_S, verdicts

PRIORITIES = ("0", "1", "2")
NO_PROVIDER_SOURCES = ("cache", "template", "human")  # real answers without an LLM call


@dataclass(frozen=True, slots=True)
class RunRecord:
    """Everything a run observed, for :func:`analyse`."""

    scenario: Scenario
    provider: ProviderConfig
    messages: Mapping[str, SentMessage]
    replies: Sequence[ReceivedReply]
    load_seconds: Sequence[LoadSecond]
    provider_seconds: Sequence[ProviderSecond]
    depths: Sequence[tuple[float, Mapping[str, float]]]  # (at, depth per priority)
    levels: Sequence[tuple[float, float]]  # (at, degradation level), if peakdesk has one
    estimates: Sequence[tuple[float, Mapping[str, float]]]  # (at, estimated wait per priority)
    cpu: Sequence[tuple[float, float | None, float]]  # (at, peakdesk's CPU s, ours)
    final_metrics: MetricsSample | None
    load_end_s: float
    end_s: float
    drained: bool
    malformed_callbacks: int = 0
    unauthorized_calls: int = 0
    max_lag_s: float = 0.0


def percentiles(values: Iterable[float]) -> dict[str, Any]:
    """count, p50, p95, p99 and max (nearest rank); infinite values (no answer) stay in the
    ranking and show as None."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}

    def rank(q: float) -> float | None:
        value = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        return None if math.isinf(value) else round(value, 3)

    return {
        "count": len(ordered),
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": rank(1.0),
    }


def backlog_threshold(provider: ProviderConfig) -> int:
    """Messages waiting that keep a well-paced client at the provider's limit (>= 5)."""
    return max(5, math.ceil(provider.rpm / 60 * 5)) if provider.rpm else 5


@dataclass(slots=True)
class _Outcome:
    priority: str | None
    first_try: bool  # accepted at its first attempt (not refused with 503 before)
    after_ack: bool = False  # sent while its conversation's acknowledgement was still open
    first_response: float = math.inf
    full_answer: float = math.inf
    source: str | None = None
    reply_ids: set[str] | None = None


def _outcomes(
    messages: Mapping[str, SentMessage], replies: Sequence[ReceivedReply]
) -> dict[str, _Outcome]:
    """Per accepted message: priority, times to first response and full answer, source."""
    outcomes = {
        mid: _Outcome(str(m.priority) if m.priority is not None else None, m.attempts == 1)
        for mid, m in messages.items()
        if m.status == "accepted"
    }
    arrivals: dict[str, list[float]] = {}  # conversation -> its callbacks' arrival times
    acks: dict[str, list[bool]] = {}  # ... and whether each was an acknowledgement
    for reply in sorted(replies, key=lambda r: r.at):
        arrivals.setdefault(reply.conversation, []).append(reply.at)
        acks.setdefault(reply.conversation, []).append(reply.is_ack)
        if reply.is_ack:
            continue
        for mid in reply.message_ids:
            outcome = outcomes.get(mid)
            if outcome is None:
                continue
            if outcome.reply_ids is None:
                outcome.reply_ids = set()
            outcome.reply_ids.add(reply.reply_id)
            if outcome.source is None:
                outcome.source = reply.source
                outcome.full_answer = reply.at - messages[mid].first_sent
            if outcome.priority is None and reply.priority is not None:
                outcome.priority = str(reply.priority)
    for mid, outcome in outcomes.items():
        sent = messages[mid].first_sent
        conversation = messages[mid].conversation
        times = arrivals.get(conversation, [])
        first = bisect.bisect_left(times, sent)
        if first < len(times):
            outcome.first_response = times[first] - sent
        # The last callback before it was an acknowledgement: peakdesk sends one per wait.
        outcome.after_ack = first > 0 and acks[conversation][first - 1]
    return outcomes


def _late_first(outcomes: Mapping[str, _Outcome]) -> dict[str, Any]:
    """The messages whose first response came after the target, by priority, and how many of
    them were sent while their conversation had an open acknowledgement (so got none)."""
    late = [o for o in outcomes.values() if o.first_response > FIRST_RESPONSE_P99_S]
    return {
        "count": len(late),
        "by_priority": dict(sorted(Counter(o.priority or "unknown" for o in late).items())),
        "sent_after_an_open_ack": sum(1 for o in late if o.after_ack),
    }


def _latency(outcomes: Mapping[str, _Outcome], attribute: str) -> dict[str, Any]:
    table = {"all": percentiles(getattr(o, attribute) for o in outcomes.values())}
    for p in PRIORITIES:
        table[p] = percentiles(getattr(o, attribute) for o in outcomes.values() if o.priority == p)
    return table


def _series(record: RunRecord, seconds: int) -> dict[str, Any]:
    """Per-second series for the chart and the JSON (index = second of the run)."""
    depth: dict[str, list[float | None]] = {p: [None] * seconds for p in PRIORITIES}
    for at, sample in record.depths:
        index = int(at)
        if 0 <= index < seconds:
            for p in PRIORITIES:
                depth[p][index] = sample.get(p)
    load = [
        record.load_seconds[i] if i < len(record.load_seconds) else LoadSecond()
        for i in range(seconds)
    ]
    calls = [
        record.provider_seconds[i] if i < len(record.provider_seconds) else ProviderSecond()
        for i in range(seconds)
    ]
    level: list[float | None] = [None] * seconds
    for at, value in record.levels:
        if 0 <= int(at) < seconds:
            level[int(at)] = value
    estimate: dict[str, list[float | None]] = {p: [None] * seconds for p in PRIORITIES}
    for at, waits in record.estimates:
        if 0 <= int(at) < seconds:
            for p in PRIORITIES:
                estimate[p][int(at)] = waits.get(p)
    answered: dict[str, list[int]] = {}
    acks = [0] * seconds
    for reply in record.replies:
        index = min(seconds - 1, int(reply.at))
        if reply.is_ack:
            acks[index] += 1
        else:
            answered.setdefault(reply.source, [0] * seconds)[index] += len(reply.message_ids)
    return {
        "planned_rate": [round(record.scenario.rate(i + 0.5), 3) for i in range(seconds)],
        "sent": [s.sent for s in load],
        "accepted": [s.accepted for s in load],
        "refused_503": [s.refused for s in load],
        "depth": depth,
        "provider_calls": [s.calls for s in calls],
        "provider_admitted": [s.admitted for s in calls],
        "provider_429": [s.throttled for s in calls],
        "provider_errors": [s.errors for s in calls],
        "provider_tokens": [s.prompt_tokens + s.completion_tokens for s in calls],
        "answered_by_source": answered,
        "acks": acks,
        "peak_level": level,
        "estimated_wait_s": estimate,
    }


def _provider(record: RunRecord, series: Mapping[str, Any]) -> dict[str, Any]:
    config = record.provider
    threshold = backlog_threshold(config)
    depth = series["depth"]
    backlog = [
        i
        for i in range(len(series["sent"]))
        if all(depth[p][i] is not None for p in PRIORITIES)
        and sum(depth[p][i] for p in PRIORITIES) >= threshold
    ]
    calls = record.provider_seconds

    def total(attribute: str, seconds: Iterable[int] | None = None) -> int:
        chosen = range(len(calls)) if seconds is None else seconds
        return sum(getattr(calls[i], attribute) for i in chosen if i < len(calls))

    admitted_backlog = total("admitted", backlog)
    calls_backlog = total("calls", backlog)
    tokens_backlog = total("prompt_tokens", backlog) + total("completion_tokens", backlog)
    use_requests = (
        admitted_backlog / (len(backlog) * config.rpm / 60) if backlog and config.rpm else None
    )
    use_tokens = (
        tokens_backlog / (len(backlog) * config.tpm / 60) if backlog and config.tpm else None
    )
    known = [u for u in (use_requests, use_tokens) if u is not None]
    prompt, cached = total("prompt_tokens"), total("cached_tokens")
    per_minute = [
        sum(series["provider_admitted"][max(0, i - 59) : i + 1]) for i in range(len(series["sent"]))
    ]
    return {
        "limits": {"rpm": config.rpm, "tpm": config.tpm, "concurrency": config.concurrency},
        "latency_s": {"median": config.latency_median_s, "p95": config.latency_p95_s},
        "error_rate": config.error_rate,
        "calls": total("calls"),
        "admitted": total("admitted"),
        "throttled_429": total("throttled"),
        "errors_5xx": total("errors"),
        "unauthorized": record.unauthorized_calls,
        "share_429": _share(total("throttled"), total("calls")),
        "peak_calls_per_min": max(per_minute, default=0),
        "max_in_flight": max((s.in_flight_max for s in calls), default=0),
        "tokens": {
            "prompt": prompt,
            "cached": cached,
            "completion": total("completion_tokens"),
            "cached_share": _share(cached, prompt),
        },
        "backlog": {
            "threshold_messages": threshold,
            "seconds": len(backlog),
            "calls": calls_backlog,
            "admitted": admitted_backlog,
            "throttled_429": total("throttled", backlog),
            "share_429": _share(total("throttled", backlog), calls_backlog),
            "use_of_rpm": _round(use_requests),
            "use_of_tpm": _round(use_tokens),
            "use_of_limit": _round(max(known)) if known else None,
        },
    }


def _cpu(record: RunRecord, seconds: int) -> dict[str, Any]:
    """CPU use in % of one core per second: peakdesk's process and the simulator's."""
    series: dict[str, list[float | None]] = {
        "peakdesk": [None] * seconds,
        "simulator": [None] * seconds,
    }
    for (at0, pd0, own0), (at1, pd1, own1) in zip(record.cpu, record.cpu[1:], strict=False):
        index, span = int(at1), at1 - at0
        if 0 <= index < seconds and span > 0:
            if pd0 is not None and pd1 is not None:
                series["peakdesk"][index] = round(100 * (pd1 - pd0) / span, 1)
            series["simulator"][index] = round(100 * (own1 - own0) / span, 1)
    summary: dict[str, Any] = {}
    for name, values in series.items():
        known = [v for v in values if v is not None]
        summary[name] = {
            "mean_pct": round(sum(known) / len(known), 1) if known else None,
            "max_pct": max(known, default=None),
            "seconds_over_90_pct": sum(1 for v in known if v >= 90),
        }
    return {"summary": summary, "series": series}


def _ladder(levels: Sequence[float | None]) -> dict[str, Any] | None:
    """Seconds spent at each level of peakdesk's degradation ladder (None without one)."""
    known = [int(v) for v in levels if v is not None]
    if not known:
        return None
    return {
        "max_level": max(known),
        "seconds_at_level": {str(n): known.count(n) for n in sorted(set(known))},
    }


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return round(value, digits) if value is not None else None


def _replies(record: RunRecord, outcomes: Mapping[str, _Outcome]) -> dict[str, Any]:
    deliveries = Counter((r.reply_id, r.is_ack) for r in record.replies)
    acks_open: dict[str, bool] = {}
    extra_acks = 0
    for reply in sorted(record.replies, key=lambda r: r.at):
        if reply.is_ack:
            extra_acks += acks_open.get(reply.conversation, False)
            acks_open[reply.conversation] = True
        else:
            acks_open[reply.conversation] = False
    known = record.messages
    return {
        "callbacks": len(record.replies),
        "answers": sum(1 for r in record.replies if not r.is_ack),
        "acks": sum(1 for r in record.replies if r.is_ack),
        "acks_beyond_one_per_wait": extra_acks,
        "merged_answers": sum(1 for r in record.replies if not r.is_ack and len(r.message_ids) > 1),
        "duplicate_replies": sum(
            1 for o in outcomes.values() if o.reply_ids and len(o.reply_ids) > 1
        ),
        "redeliveries": sum(n - 1 for n in deliveries.values() if n > 1),
        "unknown_message_ids": sum(
            1 for r in record.replies for mid in r.message_ids if mid not in known
        ),
        "malformed": record.malformed_callbacks,
    }


def _messages(record: RunRecord, outcomes: Mapping[str, _Outcome]) -> dict[str, Any]:
    messages = record.messages.values()
    status = Counter(m.status for m in messages)
    kinds = Counter(m.kind for m in messages)
    priorities = Counter(o.priority or "unknown" for o in outcomes.values())
    unanswered = sum(1 for o in outcomes.values() if o.source is None)
    return {
        "sent": len(record.messages),
        "planned_first_contacts": round(record.scenario.expected_messages()),
        "by_kind": dict(sorted(kinds.items())),
        "accepted": status["accepted"],
        "throttled": status["throttled"],  # over the flood limit: no answer expected
        "accepted_by_priority": dict(sorted(priorities.items())),
        "answered": sum(1 for o in outcomes.values() if o.source is not None),
        # Lost, as a customer sees it: never answered, or never let in.
        "lost": unanswered + status["gave_up"] + status["sending"],
        "lost_accepted_unanswered": unanswered,
        "refused_503": sum(m.refusals for m in messages),
        "retried_messages": sum(1 for m in messages if m.attempts > 1),
        "gave_up": status["gave_up"],
        "rejected_4xx": status["rejected"],
        "rejections": sorted({m.rejection for m in messages if m.rejection})[:5],
        "refused_at_end": status["sending"],
    }


def _sources(outcomes: Mapping[str, _Outcome], accepted: int) -> dict[str, Any]:
    counts = Counter(o.source for o in outcomes.values() if o.source is not None)
    without = sum(counts[s] for s in NO_PROVIDER_SOURCES)
    return {
        "by_source": {
            s: {"messages": n, "share": _share(n, accepted)} for s, n in sorted(counts.items())
        },
        "without_provider_call": without,
        "without_provider_share": _share(without, accepted),
    }


def _cost(record: RunRecord, answered: int) -> dict[str, Any]:
    metrics = record.final_metrics
    if metrics is None:
        return {"usd": None, "per_answered_message_usd": None, "at_real_scale_usd": None}
    usd = metrics.total("peakdesk_llm_cost_usd_total")
    return {
        "usd": round(usd, 6),
        "per_answered_message_usd": round(usd / answered, 8) if answered else None,
        "at_real_scale_usd": round(usd / record.scenario.scale, 2),
        "peakdesk_tokens": {
            kind: int(value)
            for kind, value in sorted(metrics.by_label("peakdesk_llm_tokens_total", "kind").items())
        },
    }


MESSAGE_COLUMNS = (
    "message_id",
    "conversation",
    "kind",
    "first_sent_s",
    "attempts",
    "status",
    "priority",
    "first_response_s",
    "full_answer_s",
    "source",
    "replies",
)


def message_rows(record: RunRecord) -> list[dict[str, Any]]:
    """One row per message sent (``MESSAGE_COLUMNS``), for digging below the percentiles:
    which messages waited, when they were sent, how they were answered."""
    outcomes = _outcomes(record.messages, record.replies)
    rows = []
    for mid, m in record.messages.items():
        outcome = outcomes.get(mid)
        rows.append(
            {
                "message_id": mid,
                "conversation": m.conversation,
                "kind": m.kind,
                "first_sent_s": round(m.first_sent, 3),
                "attempts": m.attempts,
                "status": m.status,
                "priority": outcome.priority if outcome else m.priority,
                "first_response_s": _finite(outcome.first_response) if outcome else None,
                "full_answer_s": _finite(outcome.full_answer) if outcome else None,
                "source": outcome.source if outcome else None,
                "replies": len(outcome.reply_ids or ()) if outcome else 0,
            }
        )
    return rows


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 3)


def analyse(record: RunRecord) -> dict[str, Any]:
    """The report's figures (JSON-ready; see the module docstring for the definitions)."""
    seconds = max(1, math.ceil(record.end_s))
    outcomes = _outcomes(record.messages, record.replies)
    series = _series(record, seconds)
    report: dict[str, Any] = {
        "messages": _messages(record, outcomes),
        "replies": _replies(record, outcomes),
        "latency": {
            "first_response": _latency(outcomes, "first_response"),
            "full_answer": _latency(outcomes, "full_answer"),
            # Tells the wait for admission (503s) apart from the wait for an ack or answer.
            "first_response_first_try": _latency(
                {k: o for k, o in outcomes.items() if o.first_try}, "first_response"
            ),
            "first_response_over_target": _late_first(outcomes),
        },
    }
    report["sources"] = _sources(outcomes, report["messages"]["accepted"])
    report["provider"] = _provider(record, series)
    report["cost"] = _cost(record, report["messages"]["answered"])
    report["ladder"] = _ladder(series["peak_level"])
    report["targets"] = verdicts(report)
    cpu = _cpu(record, seconds)
    report["cpu"] = cpu["summary"]
    report["series"] = {**series, "cpu_pct": cpu["series"]}
    return report
