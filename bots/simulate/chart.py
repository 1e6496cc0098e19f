"""``report.png``: the run on one page, drawn with matplotlib (Agg: no display needed).

Three panels over time, with the phases shaded: queue depth per priority; provider calls per
minute against its limit, with the 429s; answers per second by source against the arrivals.
A fourth panel compares the latency percentiles per priority with the targets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bots.simulate.analysis import PRIORITIES
from bots.simulate.targets import FIRST_RESPONSE_P99_S, URGENT_FULL_P95_S

COLOURS = {"0": "#c0392b", "1": "#e67e22", "2": "#2980b9"}
SOURCE_COLOURS = {
    "llm": "#8e44ad",
    "cache": "#27ae60",
    "template": "#16a085",
    "human": "#2c3e50",
    "fallback": "#7f8c8d",
}
SMOOTH_S = 10


def _smooth(values: Sequence[float], window: int = SMOOTH_S) -> list[float]:
    """Centred mean over ``window`` seconds: a per-second count read as a rate, without the
    lag of a trailing mean."""
    half = window // 2
    out = []
    for i in range(len(values)):
        part = values[max(0, i - half) : i + window - half]
        out.append(sum(part) / len(part))
    return out


def _phases(scenario: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    edges, start = [], 0.0
    for name in ("baseline", "ramp", "hold", "decay"):
        length = float(scenario[f"{name}_s"])
        edges.append((name, start, start + length))
        start += length
    return edges


def draw_chart(report: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = report["series"]
    seconds = list(range(len(series["sent"])))
    figure, axes = plt.subplots(4, 1, figsize=(11, 13), constrained_layout=True)
    depth_ax, provider_ax, answer_ax, latency_ax = axes
    for ax in (depth_ax, provider_ax, answer_ax):
        for n, (name, start, end) in enumerate(_phases(report["scenario"])):
            if end > start:
                ax.axvspan(start, end, color="#000000", alpha=0.04 * (n % 2 + 1), lw=0)
                if ax is depth_ax:
                    ax.text(
                        (start + end) / 2,
                        0.98,
                        name,
                        transform=ax.get_xaxis_transform(),
                        ha="center",
                        va="top",
                        fontsize=8,
                        color="#555555",
                    )
        ax.set_xlim(0, max(1, len(seconds)))
        ax.grid(alpha=0.3)

    for p in PRIORITIES:
        values = [float("nan") if v is None else v for v in series["depth"][p]]
        depth_ax.plot(seconds, values, color=COLOURS[p], label=f"priority {p}")
    levels = series["peak_level"]
    if any(v is not None for v in levels):
        ladder_ax = depth_ax.twinx()
        ladder_ax.step(
            seconds,
            [float("nan") if v is None else v for v in levels],
            where="post",
            color="#7f8c8d",
            lw=1,
            ls="--",
            label="degradation level",
        )
        ladder_ax.set_ylim(-0.2, 4.5)
        ladder_ax.set_ylabel("degradation level (dashed)")
    depth_ax.set_ylabel("messages queued or in progress")
    depth_ax.set_title("Queue depth per priority", loc="left")
    depth_ax.legend(loc="upper right")

    limit = report["provider"]["limits"]["rpm"]
    per_min = [60 * v for v in _smooth(series["provider_admitted"])]
    window = [sum(series["provider_admitted"][max(0, i - 59) : i + 1]) for i in seconds]
    provider_ax.plot(
        seconds, per_min, color="#8e44ad", label=f"accepted calls/min ({SMOOTH_S} s centred mean)"
    )
    provider_ax.plot(
        seconds, window, color="#8e44ad", ls=":", label="accepted calls in the last 60 s"
    )
    if limit:
        provider_ax.axhline(limit, color="#000000", ls="--", lw=1, label=f"limit {limit:,}/min")
    throttled = [60 * v for v in _smooth(series["provider_429"])]
    provider_ax.plot(seconds, throttled, color="#c0392b", label="429s/min")
    provider_ax.set_ylabel("calls per minute")
    provider_ax.set_title("Provider calls against its limit", loc="left")
    provider_ax.legend(loc="upper right", fontsize=8)

    by_source = series["answered_by_source"]
    names = [s for s in SOURCE_COLOURS if s in by_source] + sorted(
        set(by_source) - set(SOURCE_COLOURS)
    )
    if names:
        answer_ax.stackplot(
            seconds,
            *[_smooth(by_source[s]) for s in names],
            labels=[f"answered: {s}" for s in names],
            colors=[SOURCE_COLOURS.get(s, "#bdc3c7") for s in names],
            alpha=0.8,
        )
    answer_ax.plot(seconds, _smooth(series["sent"]), color="#000000", lw=1, label="sent")
    answer_ax.plot(seconds, _smooth(series["acks"]), color="#f1c40f", lw=1.5, label="acks")
    answer_ax.set_ylabel(f"messages per second ({SMOOTH_S} s centred mean)")
    answer_ax.set_xlabel("seconds from the start")
    answer_ax.set_title("Answers by source and arrivals", loc="left")
    answer_ax.legend(loc="upper right", fontsize=8)

    _latency_panel(latency_ax, report["latency"])
    figure.suptitle(
        f"peakdesk simulate: scale {report['scenario']['scale']:g}, "
        f"peak {report['scenario']['peak_per_min_simulated']:,.0f} messages/min",
        fontsize=12,
    )
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _latency_panel(ax: Any, latency: Mapping[str, Any]) -> None:
    """Grouped bars: p50/p95/p99 of first response and full answer per priority (log scale;
    a percentile that fell on an unanswered message is drawn to the top, marked ∞)."""
    groups = [*PRIORITIES, "all"]
    bars = [(kind, q) for kind in ("first_response", "full_answer") for q in ("p50", "p95", "p99")]
    width = 0.8 / len(bars)
    values = [latency[k][g][q] for g in groups for k, q in bars]
    top = max([v for v in values if v is not None] + [URGENT_FULL_P95_S]) * 2
    for n, (kind, q) in enumerate(bars):
        xs = [i + (n - len(bars) / 2 + 0.5) * width for i in range(len(groups))]
        heights = [latency[kind][g][q] for g in groups]
        colour = "#2980b9" if kind == "first_response" else "#8e44ad"
        alpha = {"p50": 0.4, "p95": 0.7, "p99": 1.0}[q]
        ax.bar(
            xs,
            [top if h is None else max(h, 0.01) for h in heights],
            width,
            color=colour,
            alpha=alpha,
            label=f"{kind.replace('_', ' ')} {q}",
        )
        for x, h in zip(xs, heights, strict=True):
            if h is None:
                ax.text(x, top, "∞", ha="center", va="bottom", fontsize=8)
    ax.axhline(FIRST_RESPONSE_P99_S, color="#2980b9", ls="--", lw=1, label="first response target")
    ax.axhline(URGENT_FULL_P95_S, color="#8e44ad", ls="--", lw=1, label="priority-0 answer target")
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), [f"priority {g}" if g != "all" else "all" for g in groups])
    ax.set_ylabel("seconds")
    ax.set_title("Time to first response and to full answer", loc="left")
    ax.legend(loc="upper left", fontsize=7, ncol=3)
    ax.grid(alpha=0.3, axis="y")
