"""The Slack side of the desk: shows :class:`core.models.DeskEvent` s in the support channel.

Each hand-over is one message in ``SLACK_SUPPORT_CHANNEL`` (the thread's parent, with its
buttons); the customer's later messages, status changes and undelivered replies go into its
thread. Called by the outbox, so every post is durable and retried; failures become
:class:`core.errors.DeliveryError`: 429 with Slack's ``Retry-After``, 5xx and network errors
retryable, Slack's other errors (``channel_not_found``, ``invalid_auth``...) final.

Slack allows about one message a second per channel, for all our processes together: a shared
limit in Redis (:class:`core.ratelimit.RateLimiter`) spaces the calls.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import aiohttp
from redis.asyncio import Redis
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import (
    customer_text,
    escalation_message,
    forgotten_message,
    status_note,
    undelivered_note,
)
from core.errors import DeliveryError
from core.handover import Handover, HandoverDesk
from core.keys import Keys
from core.models import DeskEvent, DeskEventKind
from core.ratelimit import Rate, RateLimiter

log = logging.getLogger("peakdesk.slack")

CHANNEL_RATE: Final = Rate(per_second=1.0, burst=3)
RATE_WAIT_S: Final = 30.0


class SlackDesk:
    """The outbox's :class:`core.outbox.DeskSender` for Slack."""

    def __init__(
        self,
        client: AsyncWebClient,
        desk: HandoverDesk,
        limiter: RateLimiter,
        redis: Redis,
        keys: Keys,
        *,
        channel: str,
    ) -> None:
        self.client = client
        self.desk = desk
        self.limiter = limiter
        self.redis = redis
        self.keys = keys
        self.channel = channel

    async def send(self, event: DeskEvent) -> None:
        if event.kind is DeskEventKind.FORGOTTEN:
            await self._forgotten(event)
            return
        handover = await self.desk.get(event.conversation_key)
        if handover is None:
            log.info("desk event for ticket %s: hand-over record expired", event.ticket_id)
            return
        if event.kind is DeskEventKind.ESCALATED:
            if handover.ticket_id == event.ticket_id:
                await self._thread(handover)
            return
        thread = await self._thread(handover)
        if event.kind is DeskEventKind.CUSTOMER:
            await self._post(customer_text(event.text), thread_ts=thread)
        elif event.kind is DeskEventKind.STATUS:
            text, blocks = escalation_message(handover)
            await self._call(
                "chat_update", channel=self.channel, ts=thread, text=text, blocks=blocks
            )
            await self._post(status_note(event.status, event.actor), thread_ts=thread)
        elif event.kind is DeskEventKind.UNDELIVERED:
            await self._post(undelivered_note(event.text), thread_ts=thread)

    async def _forgotten(self, event: DeskEvent) -> None:
        """The record is gone: take the transcript out of the parent message, say so in the
        thread (what customers wrote into the thread stays: Slack's, not ours)."""
        channel, _, ts = event.thread.rpartition(":")
        text, blocks = forgotten_message(event.ticket_id)
        await self._call("chat_update", channel=channel, ts=ts, text=text, blocks=blocks)
        await self._call("chat_postMessage", channel=channel, text=text, thread_ts=ts)

    async def _thread(self, handover: Handover) -> str:
        """The ts of the hand-over's parent message, posting it first when there is none.

        A lock in Redis makes one process post it while another waits for it (retried).
        """
        if handover.thread:
            return handover.thread.rsplit(":", 1)[1]
        lock = self.keys.desk_lock(handover.conversation_key)
        if not await self.redis.set(lock, "1", nx=True, ex=30):
            raise DeliveryError("the hand-over is being posted", retry_after=1.0)
        try:
            fresh = await self.desk.get(handover.conversation_key)
            if fresh is not None and fresh.thread:
                return fresh.thread.rsplit(":", 1)[1]
            text, blocks = escalation_message(fresh or handover)
            result = await self._post(text, blocks=blocks)
            ts = str(result["ts"])
            await self.desk.set_thread(handover.conversation_key, f"{self.channel}:{ts}")
            return ts
        finally:
            await self.redis.delete(lock)

    async def _post(self, text: str, **kwargs: Any) -> dict[str, Any]:
        return await self._call("chat_postMessage", channel=self.channel, text=text, **kwargs)

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            await self.limiter.acquire(
                [(f"slack:{self.channel}", CHANNEL_RATE)], timeout=RATE_WAIT_S
            )
        except TimeoutError as exc:
            raise DeliveryError("Slack channel rate limit busy", retry_after=1.0) from exc
        try:
            response = await getattr(self.client, method)(**kwargs)
        except SlackApiError as exc:
            raise _translate(exc) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise DeliveryError(f"Slack unreachable: {type(exc).__name__}") from exc
        return dict(response.data) if isinstance(response.data, dict) else {}


def _translate(exc: SlackApiError) -> DeliveryError:
    status = int(exc.response.status_code)
    error = str(exc.response.get("error", "")) if isinstance(exc.response.data, dict) else ""
    if status == 429 or error == "ratelimited":
        try:
            retry_after = float(exc.response.headers.get("Retry-After", "1"))
        except (TypeError, ValueError):
            retry_after = 1.0
        return DeliveryError("Slack rate limit", status=429, retry_after=retry_after)
    if status >= 500:
        return DeliveryError(f"Slack answered {status}", status=status)
    return DeliveryError(f"Slack refused: {error or status}", status=status, retryable=False)
