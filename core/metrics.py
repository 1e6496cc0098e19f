"""Prometheus metrics of one process, on a registry of its own (tests build many apps)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# The *_created series double the exposition size and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)


class Metrics:
    """Every metric peakdesk exports (documented in the README)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.admitted = Counter(
            "peakdesk_messages_admitted",
            "Messages durably queued.",
            ["channel", "priority"],
            registry=r,
        )
        self.duplicates = Counter(
            "peakdesk_messages_duplicate",
            "Inbound messages already admitted before.",
            ["channel"],
            registry=r,
        )
        self.rejected = Counter(
            "peakdesk_messages_rejected",
            "Inbound requests refused (reason: invalid, unauthorized, too_large, queue_full, "
            "store_unavailable, gateway_limit, waiters_full).",
            ["channel", "reason"],
            registry=r,
        )
        self.throttled = Counter(
            "peakdesk_messages_throttled",
            "Messages over their sender's flood limit: acknowledged, not answered (the first of "
            "a window gets the flood notice).",
            ["channel"],
            registry=r,
        )
        self.processed = Counter(
            "peakdesk_messages_processed",
            "Messages answered by a worker.",
            ["priority", "source"],
            registry=r,
        )
        self.dead_letters = Counter(
            "peakdesk_dead_letters",
            "Messages dead-lettered after too many deliveries.",
            registry=r,
        )
        self.in_flight = Gauge(
            "peakdesk_in_flight", "Messages being processed by this process.", registry=r
        )
        self.depth = Gauge(
            "peakdesk_queue_depth",
            "Messages queued or in progress, per priority (all processes).",
            ["priority"],
            registry=r,
        )
        self.wait = Histogram(
            "peakdesk_queue_wait_seconds",
            "Time from admission to a worker taking the message.",
            ["priority"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.llm_latency = Histogram(
            "peakdesk_llm_latency_seconds",
            "Latency of successful LLM calls (all attempts).",
            buckets=LLM_BUCKETS,
            registry=r,
        )
        self.llm_errors = Counter(
            "peakdesk_llm_errors", "LLM calls that failed after retries.", ["code"], registry=r
        )
        self.llm_tokens = Counter(
            "peakdesk_llm_tokens",
            "Tokens used (kind: prompt, completion, cached).",
            ["kind"],
            registry=r,
        )
        self.llm_cost = Counter(
            "peakdesk_llm_cost_usd", "Cost of LLM calls in USD from the price table.", registry=r
        )
        self.deliveries = Counter(
            "peakdesk_deliveries",
            "Reply deliveries (outcome: sent, sync, retry, failed).",
            ["channel", "outcome"],
            registry=r,
        )
        self.acks = Counter(
            "peakdesk_acknowledgements",
            "Immediate acknowledgements sent because the full answer would take longer than "
            "PEAKDESK_FIRST_RESPONSE_S, per priority.",
            ["priority"],
            registry=r,
        )
        self.peak_level = Gauge(
            "peakdesk_peak_level",
            "The degradation ladder's level (0 normal ... 4 acknowledgements for priority 2).",
            registry=r,
        )
        self.estimated_wait = Gauge(
            "peakdesk_estimated_wait_seconds",
            "Estimated wait of a new message for its full answer, per priority (-1: unknown).",
            ["priority"],
            registry=r,
        )
        self.cached_token_share = Gauge(
            "peakdesk_cached_token_share",
            "Share of today's prompt tokens the provider's prefix cache served (all processes).",
            registry=r,
        )
        self.cost_per_answer = Gauge(
            "peakdesk_cost_per_answer_usd",
            "Today's LLM cost over today's answers, all sources (all processes).",
            registry=r,
        )
        self.provider_circuit = Gauge(
            "peakdesk_provider_circuit_open",
            "1 while this process's circuit breaker keeps calls from the LLM provider.",
            registry=r,
        )

        self.http_connections = Gauge(
            "peakdesk_http_connections",
            "Client connections open on this process's listener.",
            registry=r,
        )
        self.http_connections_closed = Counter(
            "peakdesk_http_connections_closed",
            "Client connections the listener closed (reason: header_timeout, body_timeout, "
            "evicted, refused).",
            ["reason"],
            registry=r,
        )

        self.channel_events = Counter(
            "peakdesk_channel_events",
            "Channel-specific events (telegram: blocked, edited_ignored, not_addressed, "
            "rate_limited...).",
            ["channel", "event"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
