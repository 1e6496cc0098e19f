"""The report's files: ``report.json`` (everything, series included), ``report.md`` (what an
operator reads), ``report.png`` (see :mod:`bots.simulate.chart`) and ``messages.csv``."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bots.simulate.analysis import MESSAGE_COLUMNS, PRIORITIES
from bots.simulate.chart import draw_chart
from bots.simulate.targets import FIRST_RESPONSE_P99_S

DEFINITIONS = (
    "**time to first response**: from a message's first send attempt to the first callback "
    "in its conversation arriving after it, acknowledgement (`ack`) or answer;",
    "**time to full answer**: to the first callback other than an `ack` whose `message_ids` "
    "(else `message_id`) contain the message;",
    "percentiles are nearest-rank over the accepted messages; a message never answered ranks "
    "last and shows as ∞;",
    "**lost**: messages whose customer never got an answer: accepted (202, or `duplicate` on "
    "a retry) and no full answer when the run ended, plus those refused (503) until the "
    "gateway gave up or the run ended; a refused message is retried with the same id after "
    "its `Retry-After`;",
    "**duplicate replies**: messages covered by more than one distinct `reply_id` (`ack`s "
    "aside); **redeliveries**: the same `reply_id` delivered again;",
    "**answered without a provider call**: full answers from `cache`, `template` or `human`, "
    "out of all accepted messages; `fallback` (the apology) is not an answer and does not "
    "count;",
    "**backlog**: the seconds in which at least the threshold of messages were queued or in "
    "progress (`peakdesk_queue_depth`), the threshold being 5 s of the provider's request "
    "limit; **use of the limit** is the calls the provider accepted then over what its "
    "request (or token, whichever is higher) limit allows in that time.",
)


def write_report(
    report: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], out: Path
) -> None:
    """Write report.json, report.md, report.png and messages.csv (one row a message) into
    ``out``."""
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    with (out / "messages.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=MESSAGE_COLUMNS)
        writer.writeheader()
        writer.writerows(messages)
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    draw_chart(report, out / "report.png")


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "∞"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _value(value: Any, unit: str) -> str:
    """A target's value: seconds, a share (as a percentage) or a count."""
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {_value(v, unit)}" for k, v in value.items())
    if value is None:
        return "n/a"
    if unit == "share":
        return _pct(value)
    if unit == "s":
        return "∞" if math.isinf(value) else f"{value:.1f} s"
    return _num(value)


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[met]


def markdown(report: Mapping[str, Any]) -> str:
    """The report for people: verdicts first, then the figures behind them."""
    s, run, msgs = report["scenario"], report["run"], report["messages"]
    replies, provider, cost = report["replies"], report["provider"], report["cost"]
    lines = [
        "# peakdesk peak simulation",
        "",
        f"Started {run['started_at']}; {run['wall_s']:g} s in all: load {run['load_s']:g} s, "
        f"drain {run['drain_s']:g} s "
        + (
            "(every accepted message answered)."
            if run["drained"]
            else f"(**not drained** within {run['drain_timeout_s']:g} s)."
        ),
        "",
        "## Targets",
        "",
    ]
    lines += _table(
        ("target", "goal", "value", "verdict"),
        [
            (t["target"], t["goal"], _value(t["value"], t["unit"]), _verdict(t["met"]))
            for t in report["targets"]
        ],
    )
    lines += [
        "## Scenario and scale",
        "",
        f"Baseline {s['baseline_per_min']:,.0f} messages/min, ×{s['peak_factor']:g} within "
        f"{s['ramp_s']:g} s, hold {s['hold_s']:g} s, decay {s['decay_s']:g} s (after "
        f"{s['baseline_s']:g} s of baseline), run at scale {s['scale']:g}: "
        f"{s['baseline_per_min_simulated']:,.1f} → {s['peak_per_min_simulated']:,.0f} "
        f"messages/min. Seed {s['seed']}; texts: {s['texts']}. Customers: "
        f"{s['customers']['burst_share']:.0%} send a burst of 2-3 within "
        f"{s['customers']['burst_window_s']:g} s, {s['customers']['follow_up_share']:.0%} "
        "write again after their answer.",
        "",
        "Scaled by `--scale`:",
        "",
    ]
    lines += _table(
        ("quantity", "real scale", "simulated", "unit"),
        [
            (q["what"], _num(q["real"], 0), _num(q["simulated"], 1), q["unit"])
            for q in report["scaled"]
        ],
    )
    lines += ["Not scaled: " + "; ".join(report["not_scaled"]) + ".", ""]
    pd = report["peakdesk"]
    settings = ", ".join(f"`{k}={v}`" for k, v in pd["settings"].items())
    passed = ", ".join(f"`{k}`" for k in pd["passed_through"]) or "none"
    lines += [
        f"peakdesk: one `peakdesk serve --workers {pd['workers']}` process on {pd['redis']}; "
        f"set: {settings}; passed through from the environment: {passed}.",
        "",
        "## Messages",
        "",
    ]
    lines += _table(
        (
            "sent",
            "accepted",
            "answered",
            "lost",
            "of which unanswered",
            "gave up",
            "refused at end",
            "503 answers",
            "retried",
            "rejected",
            "throttled",
        ),
        [
            (
                _num(msgs["sent"]),
                _num(msgs["accepted"]),
                _num(msgs["answered"]),
                _num(msgs["lost"]),
                _num(msgs["lost_accepted_unanswered"]),
                _num(msgs["gave_up"]),
                _num(msgs["refused_at_end"]),
                _num(msgs["refused_503"]),
                _num(msgs["retried_messages"]),
                _num(msgs["rejected_4xx"]),
                _num(msgs.get("throttled", 0)),
            )
        ],
    )
    kinds = ", ".join(f"{k.replace('_', '-')} {_num(v)}" for k, v in msgs["by_kind"].items())
    by_priority = ", ".join(f"{k}: {_num(v)}" for k, v in msgs["accepted_by_priority"].items())
    lines += [f"By kind: {kinds}. Accepted by priority: {by_priority}.", ""]
    if msgs["rejections"]:
        lines += ["Rejections: " + "; ".join(f"`{r}`" for r in msgs["rejections"]), ""]
    lines += ["## Time to first response and to full answer (seconds)", ""]
    first, full = report["latency"]["first_response"], report["latency"]["full_answer"]
    lines += _table(
        (
            "priority",
            "messages",
            "first p50",
            "first p95",
            "first p99",
            "full p50",
            "full p95",
            "full p99",
        ),
        [
            (
                p,
                _num(first[p]["count"]),
                *(_num(first[p][q]) for q in ("p50", "p95", "p99")),
                *(_num(full[p][q]) for q in ("p50", "p95", "p99")),
            )
            for p in (*PRIORITIES, "all")
        ],
    )
    first_try = report["latency"]["first_response_first_try"]
    lines += [
        "First response of the messages accepted at their first attempt (the rest were refused "
        "with 503 first): "
        + "; ".join(
            f"{'priority ' + p if p != 'all' else 'all'} {_num(first_try[p]['count'])}: "
            f"p50 {_num(first_try[p]['p50'])}, p95 {_num(first_try[p]['p95'])}, "
            f"p99 {_num(first_try[p]['p99'])}"
            for p in (*PRIORITIES, "all")
        )
        + ".",
        "",
    ]
    late = report["latency"]["first_response_over_target"]
    by_priority = ", ".join(f"priority {k}: {_num(v)}" for k, v in late["by_priority"].items())
    lines += [
        f"First response after {FIRST_RESPONSE_P99_S:g} s: {_num(late['count'])} messages "
        f"({by_priority or 'none'}); {_num(late['sent_after_an_open_ack'])} of them were sent "
        "while their conversation's acknowledgement was open (one per wait), so waited for "
        "the answer. `messages.csv` has every message's times and source.",
        "",
    ]
    sources = report["sources"]
    lines += ["## Answers by source", ""]
    lines += _table(
        ("source", "messages", "share of accepted"),
        [(k, _num(v["messages"]), _pct(v["share"])) for k, v in sources["by_source"].items()],
    )
    lines += [
        f"Answered without a provider call: {_num(sources['without_provider_call'])} "
        f"({_pct(sources['without_provider_share'])}).",
        "",
        "## Replies",
        "",
        f"{_num(replies['callbacks'])} callbacks: {_num(replies['answers'])} answers "
        f"({_num(replies['merged_answers'])} answering several messages at once), "
        f"{_num(replies['acks'])} acknowledgements ({_num(replies['acks_beyond_one_per_wait'])} "
        f"beyond one per wait). Duplicate replies {_num(replies['duplicate_replies'])}, "
        f"redeliveries {_num(replies['redeliveries'])}, unknown message ids "
        f"{_num(replies['unknown_message_ids'])}, malformed {_num(replies['malformed'])}.",
        "",
        *_ladder(report.get("ladder")),
        "## Provider",
        "",
    ]
    limits, backlog, tokens = provider["limits"], provider["backlog"], provider["tokens"]
    lines += [
        f"Limits {limits['rpm']:,} requests/min, {limits['tpm']:,} tokens/min, "
        f"{limits['concurrency']:,} in flight; latency median "
        f"{provider['latency_s']['median']:g} s, p95 {provider['latency_s']['p95']:g} s; "
        f"5xx rate {provider['error_rate']:.1%}.",
        "",
    ]
    lines += _table(
        (
            "calls",
            "accepted",
            "429",
            "429 share",
            "5xx",
            "peak calls/min (60 s window)",
            "most in flight",
        ),
        [
            (
                _num(provider["calls"]),
                _num(provider["admitted"]),
                _num(provider["throttled_429"]),
                _pct(provider["share_429"]),
                _num(provider["errors_5xx"]),
                _num(provider["peak_calls_per_min"]),
                _num(provider["max_in_flight"]),
            )
        ],
    )
    lines += [
        f"Backlog (depth ≥ {backlog['threshold_messages']:,}): {backlog['seconds']:,} s; "
        f"use of the request limit {_pct(backlog['use_of_rpm'])}, of the token limit "
        f"{_pct(backlog['use_of_tpm'])}; 429 share then {_pct(backlog['share_429'])}.",
        "",
        f"Tokens: prompt {_num(tokens['prompt'])} ({_pct(tokens['cached_share'])} cached), "
        f"completion {_num(tokens['completion'])}.",
        "",
        "## Cost",
        "",
        f"{_cost(cost['usd'])} for this run (peakdesk's `peakdesk_llm_cost_usd_total`), "
        f"{_cost(cost['per_answered_message_usd'])} per answered message; the same peak at "
        f"real scale: about {_cost(cost['at_real_scale_usd'])} (this run's cost / scale).",
        "",
        "## Machine",
        "",
        *_machine(report["cpu"], run["max_send_lag_s"]),
        "",
        "## Definitions",
        "",
        *(f"- {d}" for d in DEFINITIONS),
        "",
        "![depth, provider use and answers over time](report.png)",
        "",
    ]
    return "\n".join(lines)


def _cost(value: float | None) -> str:
    """Dollars with the digits that matter: cents from $1 up, 4 significant digits below."""
    if value is None:
        return "n/a"
    return f"${value:,.2f}" if value >= 1 else f"${value:.4g}"


def _machine(cpu: Mapping[str, Any], lag_s: float) -> list[str]:
    """CPU of peakdesk and of the simulator, and whether the machine limited the run."""
    pd, sim = cpu["peakdesk"], cpu["simulator"]
    lines = [
        f"CPU in % of one core, mean / max: peakdesk {_num(pd['mean_pct'])} / "
        f"{_num(pd['max_pct'])}, the simulator {_num(sim['mean_pct'])} / "
        f"{_num(sim['max_pct'])}; the load generator sent at most {lag_s:.2f} s late."
    ]
    if pd["seconds_over_90_pct"] or sim["seconds_over_90_pct"] or lag_s > 1:
        lines += [
            "",
            f"**Machine-bound for part of the run** (peakdesk ≥ 90% of a core for "
            f"{pd['seconds_over_90_pct']} s, the simulator for {sim['seconds_over_90_pct']} s): "
            "latencies may reflect this machine rather than peakdesk's design; run again with "
            "a lower `--scale` to tell them apart.",
        ]
    return lines


def _ladder(ladder: Mapping[str, Any] | None) -> list[str]:
    """peakdesk's degradation ladder over the run, when its ``/metrics`` show one."""
    if ladder is None:
        return []
    seconds = ", ".join(f"level {k}: {v} s" for k, v in ladder["seconds_at_level"].items())
    return [
        "## Degradation ladder",
        "",
        f"Highest level {ladder['max_level']} (`peakdesk_peak_level`, sampled each second): "
        f"{seconds}.",
        "",
    ]
