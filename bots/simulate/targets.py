"""The targets a peak must meet (issue 6), judged on a report's figures."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

FIRST_RESPONSE_P99_S = 5.0
URGENT_FULL_P95_S = 30.0
PROVIDER_USE_MIN = 0.95
THROTTLED_MAX = 0.01
NO_PROVIDER_SHARE_MIN = 0.5


def _target(name: str, goal: str, value: Any, met: bool | None, unit: str = "") -> dict[str, Any]:
    """``unit``: "s" (seconds), "share" (0-1, shown as a percentage) or "" (a count)."""
    return {"target": name, "goal": goal, "value": value, "met": met, "unit": unit}


def verdicts(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with its value in ``report`` and whether it was met (None:
    not measured, e.g. no backlog formed)."""
    messages, replies = report["messages"], report["replies"]
    first_p99 = report["latency"]["first_response"]["all"]["p99"]
    urgent = report["latency"]["full_answer"]["0"]
    backlog = report["provider"]["backlog"]
    use, throttled = backlog["use_of_limit"], backlog["share_429"]
    share = report["sources"]["without_provider_share"]
    provider_met = (
        None if use is None else use >= PROVIDER_USE_MIN and (throttled or 0) <= THROTTLED_MAX
    )
    return [
        _target("messages lost", "0", messages["lost"], messages["lost"] == 0),
        _target(
            "duplicate replies",
            "0",
            replies["duplicate_replies"],
            replies["duplicate_replies"] == 0,
        ),
        _target(
            "p99 time to first response",
            f"<= {FIRST_RESPONSE_P99_S:g} s",
            first_p99,
            first_p99 is not None and first_p99 <= FIRST_RESPONSE_P99_S,
            "s",
        ),
        _target(
            "priority-0 p95 time to full answer",
            f"<= {URGENT_FULL_P95_S:g} s",
            urgent["p95"],
            None if not urgent["count"] else (urgent["p95"] or math.inf) <= URGENT_FULL_P95_S,
            "s",
        ),
        _target(
            "provider use during the backlog, 429 share",
            f">= {PROVIDER_USE_MIN:.0%} of its limit, <= {THROTTLED_MAX:.0%} 429s",
            {"use_of_limit": use, "share_429": throttled},
            provider_met,
            "share",
        ),
        _target(
            "answered without a provider call",
            f">= {NO_PROVIDER_SHARE_MIN:.0%} of messages",
            share,
            share is not None and share >= NO_PROVIDER_SHARE_MIN,
            "share",
        ),
    ]
