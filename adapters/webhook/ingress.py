"""``POST /webhook/{gateway}``: signed JSON in, 202 only once the message is durably queued."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web
from redis.exceptions import RedisError

from adapters.webhook.convert import (
    CHANNEL,
    GATEWAY_NAME,
    MAX_BODY_BYTES,
    PayloadError,
    callback_body,
    parse_forget,
    parse_payload,
    to_inbound,
)
from adapters.webhook.signing import SignatureError, verify
from core.aio import read_limited
from core.errors import AdmissionRefused, StoreUnavailable
from core.metrics import Metrics
from core.models import InboundMessage, MessageMetadata, Reply
from core.queue import Admission
from core.ratelimit import Rate

log = logging.getLogger("peakdesk.webhook")

MAX_WAIT_S = 25.0


class Admitter(Protocol):
    async def admit(
        self, message: InboundMessage, priority: int, *, wait_until: float = 0.0
    ) -> Admission: ...


class PriorityDetector(Protocol):
    def detect(self, text: str, metadata: MessageMetadata | None = None) -> Any: ...


class ReplyWaiter(Protocol):
    def can_wait(self) -> bool: ...

    async def wait_for_reply(self, ticket_id: str, timeout: float) -> Reply | None: ...


class Forgetter(Protocol):
    async def forget(self, conversation_key: str) -> int: ...


class GatewayLimiter(Protocol):
    async def try_acquire(self, limits: Sequence[tuple[str, Rate]]) -> float: ...


def _error(status: int, message: str, field: str | None = None, **headers: str) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers or None)


class WebhookIngress:
    """Validates, authenticates and admits gateway messages (see the README's contract)."""

    def __init__(
        self,
        queue: Admitter,
        detector: PriorityDetector,
        waiter: ReplyWaiter,
        metrics: Metrics,
        *,
        secret: str | None,
        allow_unsigned: bool,
        default_callback_url: str | None,
        retry_after_s: int = 5,
        limiter: GatewayLimiter | None = None,
        gateway_limit: int = 0,
        gateway_limits: Mapping[str, int] | None = None,
        forgetter: Forgetter | None = None,
    ) -> None:
        self.queue = queue
        self.detector = detector
        self.waiter = waiter
        self.metrics = metrics
        self.secret = secret
        self.allow_unsigned = allow_unsigned
        self.default_callback_url = default_callback_url
        self.retry_after_s = retry_after_s
        self.limiter = limiter
        self.gateway_limit = gateway_limit
        self.gateway_limits = dict(gateway_limits or {})
        self.forgetter = forgetter

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/webhook/{gateway}", self.handle),
            web.post("/webhook/{gateway}/forget", self.forget),
        ]

    def _reject(
        self, reason: str, status: int, message: str, field: str | None = None, **headers: str
    ) -> web.Response:
        self.metrics.rejected.labels(CHANNEL, reason).inc()
        return _error(status, message, field, **headers)

    async def _over_gateway_limit(self, gateway: str) -> web.Response | None:
        """429 when the gateway posts more than its messages a minute (nothing is stored: it
        sends the message again after Retry-After)."""
        per_minute = self.gateway_limits.get(gateway, self.gateway_limit)
        if not per_minute or self.limiter is None:
            return None
        try:
            wait = await self.limiter.try_acquire(
                [(f"gateway:{gateway}", Rate(per_minute / 60.0, burst=max(1, per_minute // 60)))]
            )
        except RedisError:
            return None  # admission reports the outage itself
        if not wait:
            return None
        return self._reject(
            "gateway_limit",
            429,
            f"gateway {gateway} is over its limit of {per_minute} messages a minute",
            None,
            **{"Retry-After": str(max(1, math.ceil(wait)))},
        )

    async def _signed_body(self, request: web.Request) -> bytes | web.Response:
        """The request's body once the gateway name, size and signature are checked; else
        the 4xx answer."""
        if not GATEWAY_NAME.fullmatch(request.match_info["gateway"]):
            return self._reject(
                "invalid", 400, "gateway: 1-32 characters of a-z, 0-9, - and _", "gateway"
            )
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return self._reject("too_large", 413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            body = await read_limited(request.content, MAX_BODY_BYTES)
        except (ValueError, ConnectionError) as exc:
            return self._reject("invalid", 400, f"cannot read body: {type(exc).__name__}")
        if body is None:
            return self._reject("too_large", 413, f"body over {MAX_BODY_BYTES} bytes")
        if self.secret:
            try:
                verify(self.secret, request.headers, body)
            except SignatureError as exc:
                return self._reject("unauthorized", 401, str(exc))
        elif not self.allow_unsigned:
            return self._reject("unauthorized", 401, "WEBHOOK_SECRET is not configured")
        return body

    async def forget(self, request: web.Request) -> web.Response:
        """``POST /webhook/{gateway}/forget``: delete a customer's stored conversation data
        (the customer asked the gateway to); signed like messages."""
        body = await self._signed_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            conversation_id = parse_forget(body)
        except PayloadError as exc:
            return self._reject("invalid", 400, str(exc), exc.field)
        if self.forgetter is None:
            return _error(404, "forgetting is not available here")
        key = f"{CHANNEL}:{request.match_info['gateway']}:{conversation_id}"
        try:
            deleted = await self.forgetter.forget(key)
        except RedisError:
            return _error(
                503,
                "store unavailable, retry later",
                **{"Retry-After": str(self.retry_after_s)},
            )
        return web.json_response(
            {"status": "forgotten", "conversation_id": conversation_id, "deleted": deleted}
        )

    async def handle(self, request: web.Request) -> web.Response:
        gateway = request.match_info["gateway"]
        body = await self._signed_body(request)
        if isinstance(body, web.Response):
            return body

        refused = await self._over_gateway_limit(gateway)
        if refused is not None:
            return refused
        wait = 0.0
        if "wait" in request.query:
            try:
                wait = float(request.query["wait"])
            except ValueError:
                wait = -1.0
            if not 0 <= wait <= MAX_WAIT_S:
                return self._reject(
                    "invalid", 400, f"wait: a number of seconds 0-{MAX_WAIT_S:g}", "wait"
                )
            if wait and not self.waiter.can_wait():  # refused before anything is stored
                return self._reject(
                    "waiters_full",
                    503,
                    "too many requests waiting (?wait) at once: send again later, or without wait",
                    None,
                    **{"Retry-After": str(self.retry_after_s)},
                )
        try:
            payload = parse_payload(body)
            message = to_inbound(gateway, payload, self.default_callback_url)
        except PayloadError as exc:
            return self._reject("invalid", 400, str(exc), exc.field)

        priority = int(self.detector.detect(message.text, message.metadata).priority)
        wait_until = time.time() + wait if wait else 0.0
        try:
            admission = await self.queue.admit(message, priority, wait_until=wait_until)
        except AdmissionRefused as exc:
            return self._reject(
                "queue_full",
                503,
                "queue full, retry later",
                None,
                **{"Retry-After": str(exc.retry_after)},
            )
        except StoreUnavailable:
            return self._reject(
                "store_unavailable",
                503,
                "message store unavailable, retry later",
                None,
                **{"Retry-After": str(self.retry_after_s)},
            )

        if admission.status == "duplicate":
            self.metrics.duplicates.labels(CHANNEL).inc()
            return web.json_response({"status": "duplicate", "ticket_id": admission.ticket_id})
        if admission.status == "throttled":
            self.metrics.throttled.labels(CHANNEL).inc()
            return web.json_response(
                {
                    "status": "throttled",
                    "ticket_id": admission.ticket_id,
                    "notice": admission.notice,
                },
                status=202,
            )
        self.metrics.admitted.labels(CHANNEL, str(priority)).inc()
        queued = {"status": "queued", "ticket_id": admission.ticket_id, "priority": priority}
        if wait:
            reply = await self.waiter.wait_for_reply(admission.ticket_id, wait)
            if reply is not None:
                return web.json_response(
                    {
                        "status": "answered",
                        "ticket_id": admission.ticket_id,
                        "reply": callback_body(reply),
                    }
                )
        return web.json_response(queued, status=202)
