"""The figures of one fault run, from outside peakdesk: what the load generator sent and got
back, what the gateway's callback endpoint and the Telegram API received.

- sent: messages sent at least once;
- acknowledged: answered 2xx at some attempt (202 queued, 200 duplicate, Telegram's 200);
- answered: acknowledged, with a reply other than an acknowledgement (a callback answered
  2xx, a ``sendMessage`` Telegram took);
- lost: acknowledged and not answered when the run ended;
- duplicates: messages with more than one distinct reply (acknowledgements aside): distinct
  ``reply_id``s on the webhook, distinct texts on Telegram;
- redelivered: the same reply delivered again (the same ``reply_id``; the same text to the
  same Telegram message), the at-least-once delivery after a process died between the send
  and its record: webhook gateways dedupe on ``reply_id``, a Telegram customer sees it twice;
- acks: acknowledgement replies (``source`` ack, ``reply_id`` A...), not answers;
- fallbacks: answers that are the apology (``source`` fallback);
- dead, undelivered: entries in the dead letters (messages given up after
  ``PEAKDESK_MAX_DELIVERIES``) and in the undelivered replies (``{pd}:out:dead``);
- recover: fault end until every message first sent before it had its answer (the fault's
  backlog drained: from then on answers keep up with arrivals);
- llm back: fault end until the first answer the provider wrote again to a message sent
  after the fault.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import quantiles
from typing import Any

from tests.faults.cluster import FaultCluster
from tests.faults.load import Sent, SteadyLoad

ACK_PREFIXES = ("Thanks, we have your message (ticket", "Got it (ticket", "已收到")
FALLBACK_PREFIXES = ("Sorry, we could not answer", "抱歉")
PROVIDER_SOURCES = frozenset({"llm", "cache"})


@dataclass
class Reply:
    """One reply as the outside world received it."""

    key: str  # the message it answers (each of them, for a burst's reply)
    reply_id: str  # webhook: reply_id; Telegram: the text (the same reply has the same text)
    source: str
    at: float


@dataclass(frozen=True)
class Outcome:
    """One message's story, in seconds since the load started (None: never)."""

    key: str
    channel: str
    sent_at: float
    acked_at: float | None
    answered_at: float | None
    source: str | None
    replies: int


@dataclass
class Figures:
    scenario: str
    sent: int = 0
    acknowledged: int = 0
    answered: int = 0
    lost: int = 0
    duplicates: int = 0
    redelivered: int = 0
    acks: int = 0
    fallbacks: int = 0
    dead: int = 0
    undelivered: int = 0
    retried: int = 0  # messages sent more than once
    refused: int = 0  # attempts answered non-2xx or not at all
    recover_s: float | None = None
    llm_back_s: float | None = None
    p50_s: float | None = None  # first send -> answer, every answered message
    p99_s: float | None = None
    sources: Counter[str] = field(default_factory=Counter)
    by_channel: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # sent, ack, ans
    channel_p99_s: dict[str, float] = field(default_factory=dict)
    lost_keys: list[str] = field(default_factory=list)
    duplicate_keys: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def line(self) -> str:
        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}s"

        return (
            f"{self.scenario}: sent {self.sent}, acknowledged {self.acknowledged}, "
            f"answered {self.answered}, lost {self.lost}, duplicates {self.duplicates}, "
            f"redelivered {self.redelivered}, acks {self.acks}, fallbacks {self.fallbacks}, "
            f"dead {self.dead}, undelivered {self.undelivered}, "
            f"retried {self.retried} ({self.refused} refused attempts), "
            f"recover {seconds(self.recover_s)}, llm back {seconds(self.llm_back_s)}, "
            f"latency p50 {seconds(self.p50_s)} p99 {seconds(self.p99_s)}, "
            f"sources {dict(self.sources)}, channels (sent, acknowledged, answered) "
            f"{self.by_channel}, p99 per channel {self.channel_p99_s}"
        )


def percentile(values: list[float], n: int) -> float:
    return quantiles(values, n=100, method="inclusive")[n - 1]


def webhook_replies(cluster: FaultCluster, keys: Iterable[str]) -> list[Reply]:
    """Every callback the receiver accepted for one of ``keys`` (message ids), once per
    message it answers."""
    wanted = set(keys)
    replies = []
    for callback in cluster.receiver.received:
        body: dict[str, Any] = callback.body
        if body.get("_status", 200) >= 300 or body.get("message_id") not in wanted:
            continue
        for key in body.get("message_ids") or [body["message_id"]]:
            replies.append(Reply(key, str(body["reply_id"]), str(body["source"]), callback.at))
    return replies


def telegram_replies(cluster: FaultCluster, keys: Iterable[str]) -> list[Reply]:
    """Every message Telegram took in reply to one of ``keys`` ("<chat>:<message id>")."""
    wanted = set(keys)
    replies = []
    for call in cluster.telegram.calls_to("sendMessage", ok_only=True):
        reply_to = call.params.get("reply_parameters") or {}
        key = f"{call.params.get('chat_id')}:{reply_to.get('message_id')}"
        if key not in wanted:
            continue
        text = str(call.params.get("text", ""))
        source = (
            "ack"
            if text.startswith(ACK_PREFIXES)
            else "fallback"
            if text.startswith(FALLBACK_PREFIXES)
            else "llm"
            if text.startswith("Echo:")
            else "template"
        )
        replies.append(Reply(key, text, source, call.at))
    return replies


def all_replies(cluster: FaultCluster, load: SteadyLoad) -> list[Reply]:
    return webhook_replies(cluster, (s.key for s in load.webhook)) + telegram_replies(
        cluster, (s.key for s in load.telegram)
    )


def unanswered(cluster: FaultCluster, load: SteadyLoad) -> list[Sent]:
    """Acknowledged messages without an answer yet."""
    answered = {r.key for r in all_replies(cluster, load) if r.source != "ack"}
    return [s for s in load.sent.values() if s.acked_at is not None and s.key not in answered]


def tally(
    scenario: str,
    cluster: FaultCluster,
    load: SteadyLoad,
    *,
    fault_end: float | None = None,
) -> Figures:
    figures = Figures(scenario)
    answers: dict[str, list[Reply]] = defaultdict(list)
    for reply in all_replies(cluster, load):
        if reply.source == "ack":
            figures.acks += 1
        else:
            answers[reply.key].append(reply)
    latencies: list[float] = []
    per_channel: dict[str, list[float]] = defaultdict(list)
    first_answer: dict[str, float] = {}
    channels: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    zero = load.started_at

    def outcome(sent: Sent, replies: list[Reply]) -> Outcome:
        first = min(replies, key=lambda r: r.at) if replies else None
        return Outcome(
            sent.key,
            sent.channel,
            sent.first_at - zero,
            None if sent.acked_at is None else sent.acked_at - zero,
            None if first is None else first.at - zero,
            None if first is None else first.source,
            len(replies),
        )

    for sent in load.sent.values():
        figures.outcomes.append(outcome(sent, answers.get(sent.key, [])))
        counts = channels[sent.channel]
        figures.sent += 1
        counts[0] += 1
        figures.retried += sent.attempts > 1
        figures.refused += sum(n for status, n in sent.answers.items() if not 200 <= status < 300)
        if sent.acked_at is None:
            continue
        figures.acknowledged += 1
        counts[1] += 1
        replies = answers.get(sent.key, [])
        if not replies:
            figures.lost += 1
            figures.lost_keys.append(sent.key)
            continue
        figures.answered += 1
        counts[2] += 1
        ids = Counter(r.reply_id for r in replies)
        if len(ids) > 1:
            figures.duplicates += 1
            figures.duplicate_keys.append(sent.key)
        figures.redelivered += sum(n - 1 for n in ids.values())
        first = min(replies, key=lambda r: r.at)
        first_answer[sent.key] = first.at
        figures.sources[first.source] += 1
        figures.fallbacks += first.source == "fallback"
        latencies.append(first.at - sent.first_at)
        per_channel[sent.channel].append(first.at - sent.first_at)
    figures.by_channel = {name: (c[0], c[1], c[2]) for name, c in channels.items()}
    if len(latencies) >= 2:
        figures.p50_s, figures.p99_s = percentile(latencies, 50), percentile(latencies, 99)
    figures.channel_p99_s = {
        name: round(percentile(values, 99), 1)
        for name, values in per_channel.items()
        if len(values) >= 2
    }
    if fault_end is not None:
        backlog = [
            first_answer.get(s.key, time.monotonic())
            for s in load.sent.values()
            if s.first_at < fault_end and s.acked_at is not None
        ]
        figures.recover_s = max(0.0, max(backlog, default=fault_end) - fault_end)
        after = [
            r.at
            for key, replies in answers.items()
            for r in replies
            if r.source in PROVIDER_SOURCES and load.sent[key].first_at >= fault_end
        ]
        figures.llm_back_s = max(0.0, min(after) - fault_end) if after else None
    return figures
