"""``POST /telegram/webhook``, and :meth:`TelegramIngress.accept`, which long polling shares.

Telegram redelivers an update until it gets a 2xx, and holds back the rest of that chat
meanwhile. So the webhook answers 200 only once the update is durably handled (queued for the
LLM, answered directly, or deliberately ignored) and 503 when the store could not take it.

Redelivered updates are deduplicated by their message: the admission dedupe key
``telegram:<bot id>:<chat id>:<message id>`` is the same for every delivery of an update, in
the queue and for direct answers alike. Updates that produce nothing (edits, group messages
not addressed to the bot, service messages) need no dedupe: acknowledging them twice changes
nothing (only their channel_events count can repeat). The two commands with side effects run
them only for a message not seen before, so a redelivered ``/forget`` cannot wipe what the
customer wrote after it.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web
from redis.exceptions import RedisError

from adapters.telegram.convert import (
    CHANNEL,
    AnswerNonText,
    AskLLM,
    BotIdentity,
    InvalidUpdate,
    RunCommand,
    classify_update,
)
from adapters.telegram.templates import template
from core.aio import read_limited
from core.errors import AdmissionRefused, StoreUnavailable
from core.handover import ConversationForgetter, Escalation, HandoverDesk, escalation_notice
from core.metrics import Metrics
from core.models import InboundMessage, ReplySource
from core.priority import PriorityDetector
from core.queue import PriorityQueue
from core.state import ConversationState

log = logging.getLogger("peakdesk.telegram")

WEBHOOK_PATH: Final = "/telegram/webhook"
SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
MAX_BODY_BYTES: Final = 1024 * 1024
HUMAN_REASON: Final = "customer asked (/human)"
_OK_BODY: Final = b"{}"  # never a method call: Telegram would execute one found in the answer


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


class TelegramIngress:
    """Turns Telegram updates into queued messages or direct answers (see the module doc)."""

    def __init__(
        self,
        queue: PriorityQueue,
        detector: PriorityDetector,
        state: ConversationState,
        handover: HandoverDesk,
        metrics: Metrics,
        *,
        bot_id: int,
        bot_username: str | None,
        secret: str | None,
        retry_after_s: int = 5,
    ) -> None:
        self.queue = queue
        self.detector = detector
        self.state = state
        self.handover = handover
        self.forgetter = ConversationForgetter(state, handover)
        self.metrics = metrics
        self.bot = BotIdentity(bot_id, bot_username)
        # None disables the check: for tests and loopback only (the runtime refuses otherwise).
        self._secret = secret.encode() if secret else None
        self.retry_after_s = retry_after_s
        # Bound once: .labels() costs a lookup per call on the hot path.
        self._admitted = {p: metrics.admitted.labels(CHANNEL, str(p)) for p in (0, 1, 2)}
        self._duplicates = metrics.duplicates.labels(CHANNEL)

    def routes(self) -> list[web.RouteDef]:
        return [web.post(WEBHOOK_PATH, self.handle)]

    # -- webhook --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        """Size limit → secret → JSON → :meth:`accept`; 200 only once durably handled."""
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return self._reject("too_large", 413, f"body over {MAX_BODY_BYTES} bytes")
        if self._secret is not None:
            given = request.headers.get(SECRET_HEADER)
            if given is None or not hmac.compare_digest(
                given.encode("utf-8", "surrogateescape"), self._secret
            ):
                return self._reject("unauthorized", 401, f"missing or wrong {SECRET_HEADER}")
        try:
            body = await read_limited(request.content, MAX_BODY_BYTES)
        except (ValueError, ConnectionError) as exc:
            return self._reject("invalid", 400, f"cannot read body: {type(exc).__name__}")
        if body is None:
            return self._reject("too_large", 413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            update = json.loads(body)
        except (ValueError, RecursionError):  # also UnicodeDecodeError; nested too deep
            return self._reject("invalid", 400, "body must be a JSON object")
        if not isinstance(update, dict):
            return self._reject("invalid", 400, "body must be a JSON object")
        try:
            await self.accept(update)
        except InvalidUpdate as exc:
            return self._reject("invalid", 400, str(exc))
        except AdmissionRefused as exc:
            return self._reject(
                "queue_full",
                503,
                "queue full, retry later",
                **{"Retry-After": str(exc.retry_after)},
            )
        except StoreUnavailable:
            return self._reject(
                "store_unavailable",
                503,
                "message store unavailable, retry later",
                **{"Retry-After": str(self.retry_after_s)},
            )
        return web.Response(body=_OK_BODY, content_type="application/json")

    def _reject(self, reason: str, status: int, message: str, **headers: str) -> web.Response:
        self.metrics.rejected.labels(CHANNEL, reason).inc()
        return _error(status, message, **headers)

    # -- shared with polling ----------------------------------------------------------------

    async def accept(self, update: Mapping[str, Any]) -> None:
        """Handle one update durably, once. Returns only when it is queued, answered or ignored.

        Raises InvalidUpdate (not an update), StoreUnavailable and AdmissionRefused (nothing
        was stored: the update must be delivered again later).
        """
        decision = classify_update(update, self.bot)
        if isinstance(decision, AskLLM):
            await self._admit(decision.message)
        elif isinstance(decision, RunCommand):
            await self._run_command(decision.command, decision.message)
        elif isinstance(decision, AnswerNonText):
            text = template("text_only", decision.message.metadata.locale)
            await self._answer_directly(decision.message, text, 2, "non_text")
        else:
            self.metrics.channel_events.labels(CHANNEL, decision.reason).inc()

    async def _admit(self, message: InboundMessage) -> None:
        priority = int(self.detector.detect(message.text, message.metadata).priority)
        admission = await self.queue.admit(message, priority)
        if admission.status == "duplicate":
            self._duplicates.inc()
        elif admission.status == "throttled":
            self.metrics.throttled.labels(CHANNEL).inc()
        else:
            self._admitted[priority].inc()

    async def _run_command(self, command: str, message: InboundMessage) -> None:
        priority = 1 if command == "human" else 2
        text = template(command, message.metadata.locale)
        ticket_id = self.queue.new_ticket(message)
        if command in ("human", "forget"):
            try:
                if await self.queue.redis.exists(self.queue.seen_key(message)):
                    self._duplicates.inc()
                    return
                if command == "forget":
                    await self.forgetter.forget(message.conversation_key)
                elif self.handover.staffed:
                    escalation = await self._hand_over(message, ticket_id, priority)
                    wait = await self.handover.estimated_wait()
                    text = escalation_notice(escalation, ticket_id, wait, message.metadata.locale)
            except RedisError as exc:
                log.warning("/%s failed: redis error %s", command, type(exc).__name__)
                raise StoreUnavailable("conversation store unavailable") from exc
        await self._answer_directly(message, text, priority, "command", ticket_id)

    async def _hand_over(
        self, message: InboundMessage, ticket_id: str, priority: int
    ) -> Escalation:
        """Escalate for ``/human`` (with a staffed desk; else the plain template answers)."""
        snapshot = await self.state.load(message.conversation_key)
        return await self.handover.escalate(
            message,
            ticket_id=ticket_id,
            priority=priority,
            reason=HUMAN_REASON,
            order_id=snapshot.context.get("order id"),
            history=snapshot.history,
        )

    async def _answer_directly(
        self,
        message: InboundMessage,
        text: str,
        priority: int,
        event: str,
        ticket_id: str | None = None,
    ) -> None:
        admission = await self.queue.answer_directly(
            message, text, ReplySource.TEMPLATE, priority, ticket_id=ticket_id
        )
        if admission.status == "duplicate":
            self._duplicates.inc()
        elif admission.status == "throttled":  # over the flood limit: the notice, or nothing
            self.metrics.throttled.labels(CHANNEL).inc()
        else:
            self.metrics.channel_events.labels(CHANNEL, event).inc()
