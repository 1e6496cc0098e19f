"""The Slack app for support staff: a slack-bolt ``AsyncApp`` on the peakdesk server.

Routes: ``POST /slack/events`` (staff replies in hand-over threads), ``POST /slack/commands``
(``/peakdesk stats | takeover <ticket> | release <ticket> | peak <mode>``) and
``POST /slack/interactivity`` (the Take over / Return to bot / Resolve buttons). Bolt verifies
every request with the signing secret (401 on a bad signature or a timestamp over 5 minutes
old) and answers ``url_verification``.

Acknowledging: Slack wants a 2xx within 3 s and retries otherwise. Each listener does only the
durable part (one Redis script: the ownership change, the staff reply queued in the outbox)
and then acks; everything slow (posting to Slack, sending to the customer) happens after the
ack, from the outbox. So an ack means the action is stored, and a request that failed (Redis
down) answers 503 and is retried by Slack. Retries and duplicate ``event_id`` s cannot act
twice: a staff reply is queued at most once per Slack message (its channel and ts), and the
button and command actions are idempotent state changes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Final

from aiohttp import web
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import (
    NOTE_PREFIX,
    RESOLVE,
    RETURN_TO_BOT,
    TAKE_OVER,
    stats_text,
    to_plain,
)
from core.aio import read_limited
from core.handover import HandoverDesk, Operation, staff_reply_id
from core.ledger import Ledger
from core.metrics import Metrics
from core.models import InboundMessage
from core.peak import MODES, PeakMonitor
from core.queue import PriorityQueue
from core.state import ConversationState

log = logging.getLogger("peakdesk.slack")
# slack_bolt logs a request with a bad signature at INFO, whole body included: Slack's
# verification token, user ids and message text. Those lines are dropped (bolt resets the
# logger's level, not its filters); refusals are counted in
# peakdesk_messages_rejected_total{reason="unauthorized"} instead.
logging.getLogger("slack_bolt.RequestVerification").addFilter(
    lambda record: record.levelno >= logging.WARNING
)

CHANNEL: Final = "slack"
ACK_BUDGET_S: Final = 2.5  # of Slack's 3 s, for the durable part of a request
MAX_BODY_BYTES: Final = 64 * 1024
_ACTIONS: Final[dict[str, Operation]] = {
    TAKE_OVER: "take",
    RETURN_TO_BOT: "release",
    RESOLVE: "resolve",
}
USAGE: Final = (
    "Usage: `/peakdesk stats` · `/peakdesk takeover <ticket>` · `/peakdesk release <ticket>`"
    " · `/peakdesk peak on|off|auto|0-4`"
)


class SlackApp:
    """Bolt listeners over the hand-over desk (see the module docstring)."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        signing_secret: str,
        support_channel: str,
        desk: HandoverDesk,
        ledger: Ledger,
        queue: PriorityQueue,
        state: ConversationState,
        metrics: Metrics,
        peak: PeakMonitor | None = None,
    ) -> None:
        self.support_channel = support_channel
        self.peak = peak
        self.desk = desk
        self.ledger = ledger
        self.queue = queue
        self.state = state
        self.metrics = metrics
        self.bolt = AsyncApp(
            client=client,
            signing_secret=signing_secret,
            process_before_response=True,  # ack once the durable part is done
            logger=logging.getLogger("peakdesk.slack.bolt"),
        )
        self.bolt.event("message")(self._on_message)
        self.bolt.action(re.compile(f"^({'|'.join(_ACTIONS)})$"))(self._on_button)
        self.bolt.command("/peakdesk")(self._on_command)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/slack/events", self.handle),
            web.post("/slack/commands", self.handle),
            web.post("/slack/interactivity", self.handle),
        ]

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return self._reject("too_large", 413, f"body over {MAX_BODY_BYTES} bytes")
        raw = await read_limited(request.content, MAX_BODY_BYTES)
        if raw is None:
            return self._reject("too_large", 413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._reject("invalid", 400, "body is not UTF-8")
        bolt_request = AsyncBoltRequest(
            body=body,
            query=request.query_string,
            headers={k: list(request.headers.getall(k)) for k in request.headers},
        )
        try:
            async with asyncio.timeout(ACK_BUDGET_S):
                response = await self.bolt.async_dispatch(bolt_request)
        except TimeoutError:
            log.warning("slack request on %s not handled within %ss", request.path, ACK_BUDGET_S)
            return self._reject("timeout", 503, "not handled in time, retry", retry=True)
        if response.status >= 500:  # a listener failed (the store, say): Slack retries
            return self._reject("unavailable", 503, "temporarily unavailable, retry", retry=True)
        if response.status == 404 and request.path == "/slack/events":
            return web.Response(status=200)  # an event we do not act on: nothing to retry
        if response.status in (401, 404):
            self.metrics.rejected.labels(
                CHANNEL, "unauthorized" if response.status == 401 else "unhandled"
            ).inc()
        return web.Response(
            status=response.status,
            body=response.body.encode(),
            content_type="application/json" if response.body.startswith("{") else "text/plain",
        )

    def _reject(
        self, reason: str, status: int, message: str, *, retry: bool = False
    ) -> web.Response:
        self.metrics.rejected.labels(CHANNEL, reason).inc()
        headers = {"Retry-After": "1"} if retry else {"X-Slack-No-Retry": "1"}
        return web.json_response({"error": message}, status=status, headers=headers)

    # -- listeners ------------------------------------------------------------------------

    async def _on_message(self, event: dict[str, Any]) -> None:
        """A staff message in a hand-over thread goes to the customer (once per message)."""
        if event.get("channel") != self.support_channel or event.get("bot_id"):
            return
        if event.get("subtype") not in (None, "thread_broadcast"):
            return  # edits, deletions, joins, bot posts...
        user, ts, thread_ts = event.get("user"), event.get("ts"), event.get("thread_ts")
        if not user or not ts or not thread_ts or thread_ts == ts:
            return  # not a reply in a thread
        text = to_plain(str(event.get("text") or ""))
        if not text or text.startswith(NOTE_PREFIX):
            return
        conversation = await self.desk.find_by_thread(f"{self.support_channel}:{thread_ts}")
        if conversation is None:
            return
        reply_id = staff_reply_id(f"{self.support_channel}:{ts}")
        change = await self.desk.staff_reply(conversation, str(user), text, reply_id)
        self.metrics.channel_events.labels(CHANNEL, f"staff_reply_{change.outcome}").inc()
        if change.outcome in ("changed", "unchanged"):  # sent: the bot will know it was said
            await self.state.record_turn(conversation, [{"role": "assistant", "content": text}])

    async def _on_button(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        op = _ACTIONS[action["action_id"]]
        user = str(body.get("user", {}).get("id", ""))
        change = await self.desk.change(str(action.get("value", "")), op, user)
        self.metrics.channel_events.labels(CHANNEL, f"{op}_{change.outcome}").inc()
        await ack()

    async def _on_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        words = str(command.get("text") or "").split()
        user = str(command.get("user_id") or "")
        if words == ["stats"]:
            dashboard = await self.ledger.dashboard(await self.queue.depths())
            answer = stats_text(dashboard, self.peak.summary() if self.peak else None)
        elif len(words) == 2 and words[0] == "peak" and self.peak is not None:
            answer = await self._force_peak(words[1].lower(), user)
        elif len(words) == 2 and words[0] in ("takeover", "release"):
            answer = await self._by_ticket(words[0], words[1].upper(), user)
        else:
            answer = USAGE
        await ack(text=answer, response_type="ephemeral")

    async def _force_peak(self, mode: str, user: str) -> str:
        assert self.peak is not None
        if mode not in MODES:
            return f"Peak mode: one of {', '.join(f'`{m}`' for m in MODES)}."
        await self.peak.force(mode)
        log.info("peak mode set to %s by staff member %s", mode, user)
        return f"Peak mode for every process: {self.peak.summary()}"

    async def _by_ticket(self, verb: str, ticket: str, user: str) -> str:
        conversation = await self.desk.find(ticket)
        if conversation is None:
            return f"No conversation found for ticket `{ticket}`."
        if verb == "release":
            change = await self.desk.change(conversation, "release", user)
            if change.outcome == "changed":
                return f"Ticket `{ticket}`: returned to the bot."
            return f"Ticket `{ticket}` is not with a person: nothing to release."
        change = await self.desk.change(conversation, "take", user)
        if change.outcome == "unknown":  # never handed over: open a hand-over for it first
            await self._open(ticket)
            change = await self.desk.change(conversation, "take", user)
        if change.outcome == "unknown":
            return f"Ticket `{ticket}` has expired."
        return f"You own ticket `{ticket}` now: reply in its thread in <#{self.support_channel}>."

    async def _open(self, ticket: str) -> None:
        """Hand a conversation to people that nothing escalated (a staff member asked)."""
        reply = await self.queue.stored_reply(ticket)
        if reply is None:
            return
        message = InboundMessage(
            channel=reply.channel,
            message_id=reply.message_id,
            user_id=reply.user_id,
            conversation_id=reply.conversation_id,
            text="",
            account=reply.account,
            reply_to=reply.reply_to,
        )
        await self.desk.escalate(
            message,
            ticket_id=ticket,
            priority=reply.priority,
            reason="opened by staff (/peakdesk takeover)",
            history=await self.state.history(reply.conversation_key),
        )
