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
import traceback
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, Final
from urllib.parse import parse_qsl

from aiohttp import web
from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier
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
from core.errors import StoreUnavailable
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


# What Bolt raises on a payload whose fields have other types than Slack's.
_SHAPE_ERRORS: Final = (ValueError, TypeError, AttributeError, LookupError, RecursionError)


def _where(error: BaseException) -> str:
    """``TypeError at builtins.py:319``: the cause for an operator, and no payload data (an
    exception's message can quote the body)."""
    frames = traceback.extract_tb(error.__traceback__)
    place = f" at {PurePath(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return type(error).__name__ + place


def _is_ssl_check(body: str) -> bool:
    """Slack's certificate check of a slash command URL (``ssl_check=1``, form-encoded)."""
    return dict(parse_qsl(body)).get("ssl_check") == "1"


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
        self._verifier = SignatureVerifier(signing_secret)
        self.bolt.error(self._on_error)
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
        try:
            raw = await read_limited(request.content, MAX_BODY_BYTES)
        except (ValueError, ConnectionError) as exc:  # a broken gzip, a client gone...
            return self._reject("invalid", 400, f"cannot read body: {type(exc).__name__}")
        if raw is None:
            return self._reject("too_large", 413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._reject("invalid", 400, "body is not UTF-8")
        # Checked here as well as by Bolt, which parses the body first and raises (a 500) on
        # a timestamp that is no number or a signature that is not ASCII. Bolt answers
        # ssl_check requests without a signature: they pass.
        if not (self._signed(body, request.headers) or _is_ssl_check(body)):
            return self._reject("unauthorized", 401, "missing, stale or wrong Slack signature")
        try:
            bolt_request = AsyncBoltRequest(
                body=body,
                query=request.query_string,
                headers={k: list(request.headers.getall(k)) for k in request.headers},
            )
            async with asyncio.timeout(ACK_BUDGET_S):
                response = await self.bolt.async_dispatch(bolt_request)
        except TimeoutError:
            log.warning("slack request on %s not handled within %ss", request.path, ACK_BUDGET_S)
            return self._reject("timeout", 503, "not handled in time, retry", retry=True)
        except _SHAPE_ERRORS as exc:
            # Bolt reads team ids, events and actions out of the body without checking their
            # types, in the request and where it catches nothing (building its error
            # handler's arguments): a signed body that is no Slack payload.
            return self._refuse_shape(exc)
        if response.status >= 500:  # a listener failed (the store, say): Slack retries
            return self._reject("unavailable", 503, "temporarily unavailable, retry", retry=True)
        if response.status == 400:  # see _on_error: a retry cannot help
            return self._reject("invalid", 400, "not a Slack payload this app handles")
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

    def _signed(self, body: str, headers: Mapping[str, str]) -> bool:
        """Whether Slack signed ``body`` with our secret within the last 5 minutes."""
        try:
            return self._verifier.is_valid(
                body=body,
                timestamp=headers.get("X-Slack-Request-Timestamp"),
                signature=headers.get("X-Slack-Signature"),
            )
        except (ValueError, TypeError):  # a timestamp that is no number, a non-ASCII signature
            return False

    async def _on_error(self, error: Exception) -> BoltResponse:
        """A listener or a step of Bolt's raised. The store (or the network) failing is a 500
        (answered 503: Slack retries); anything else comes from a signed payload of a shape
        no retry will change (Bolt reads ``event``, ``actions``... without checking their
        types): 400, logged with its type and place but not its message (payload data)."""
        if isinstance(error, RedisError | StoreUnavailable | OSError):
            log.warning("slack request failed: store error %s", type(error).__name__)
            return BoltResponse(status=500, body="")
        log.warning("slack request refused: %s", _where(error))
        return BoltResponse(status=400, body="")

    def _refuse_shape(self, error: Exception) -> web.Response:
        log.warning("slack request refused: %s", _where(error))
        return self._reject("invalid", 400, "not a Slack payload this app handles")

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
        user = body.get("user")
        user = str(user.get("id", "")) if isinstance(user, dict) else ""
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
            group=reply.group,
        )
        await self.desk.escalate(
            message,
            ticket_id=ticket,
            priority=reply.priority,
            reason="opened by staff (/peakdesk takeover)",
            history=await self.state.history(reply.conversation_key),
            by_staff=True,
        )
