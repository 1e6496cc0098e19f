"""``POST /webhook/{gateway}``: signed JSON in, 202 only once the message is durably queued.

Each request is checked for the gateway's own secret and signed for its route (a message, or
a forget request), and each signature is accepted once (:mod:`adapters.webhook.replay`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web
from redis.exceptions import RedisError

from adapters.webhook.callback_url import CallbackPolicy
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
from adapters.webhook.signing import GatewaySecrets, Purpose, SignatureError, Signed, verify
from core.aio import read_limited
from core.errors import AdmissionRefused, StoreUnavailable
from core.metrics import Metrics
from core.models import InboundMessage, MessageMetadata, Reply, named_conversation_key
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


class ReplayGuard(Protocol):
    async def claim(self, signed: Signed) -> bool: ...

    async def release(self, signed: Signed) -> None: ...


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
        secrets: GatewaySecrets,
        allow_unsigned: bool,
        default_callback_url: str | None,
        retry_after_s: int = 5,
        limiter: GatewayLimiter | None = None,
        gateway_limit: int = 0,
        gateway_limits: Mapping[str, int] | None = None,
        forgetter: Forgetter | None = None,
        replays: ReplayGuard | None = None,
        callback_policy: CallbackPolicy | None = None,
    ) -> None:
        self.queue = queue
        self.detector = detector
        self.waiter = waiter
        self.metrics = metrics
        self.secrets = secrets
        self.allow_unsigned = allow_unsigned and not secrets.configured
        self.default_callback_url = default_callback_url
        self.retry_after_s = retry_after_s
        self.limiter = limiter
        self.gateway_limit = gateway_limit
        self.gateway_limits = dict(gateway_limits or {})
        self.forgetter = forgetter
        self.replays = replays
        self.callback_policy = callback_policy or CallbackPolicy(configured=default_callback_url)

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

    def _gateway_limits(self, gateway: str) -> list[tuple[str, int, str]]:
        """The limits a gateway's message counts against: (name, per minute, who is over it).

        A limit is the credential's: a gateway with a secret of its own has its own; all the
        gateways signing with the default secret share one (whoever holds that secret is one
        party, however many names it posts to), and a PEAKDESK_GATEWAY_LIMITS override of one
        of their names limits that name as well."""
        override = self.gateway_limits.get(gateway)
        if self.secrets.has_own(gateway):
            per_minute = self.gateway_limit if override is None else override
            limits = [(f"gateway:{gateway}", per_minute, f"gateway {gateway} is")]
        else:
            limits = [("gateway:*", self.gateway_limit, "the gateways of WEBHOOK_SECRET are")]
            if override is not None:
                limits.append((f"gateway:{gateway}", override, f"gateway {gateway} is"))
        return [limit for limit in limits if limit[1] > 0]

    async def _over_gateway_limit(self, gateway: str) -> web.Response | None:
        """429 when the gateway posts more than its messages a minute (nothing is stored: it
        sends the message again after Retry-After)."""
        limits = self._gateway_limits(gateway)
        if not limits or self.limiter is None:
            return None
        try:
            wait = await self.limiter.try_acquire(
                [(name, Rate(n / 60.0, burst=max(1, n // 60))) for name, n, _ in limits]
            )
        except RedisError:
            return None  # admission reports the outage itself
        if not wait:
            return None
        _, per_minute, who = min(limits, key=lambda limit: limit[1])
        return self._reject(
            "gateway_limit",
            429,
            f"{who} over the limit of {per_minute} messages a minute",
            None,
            **{"Retry-After": str(max(1, math.ceil(wait)))},
        )

    async def _signed_body(
        self, request: web.Request, purpose: Purpose
    ) -> tuple[bytes, Signed | None] | web.Response:
        """The request's body and signature (None: unsigned, allowed) once the gateway name,
        size and signature are checked; else the 4xx answer."""
        gateway = request.match_info["gateway"]
        if not GATEWAY_NAME.fullmatch(gateway):
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
        secret = self.secrets.for_gateway(gateway)
        if secret is None:
            if self.allow_unsigned:
                return body, None
            return self._reject(
                "unauthorized",
                401,
                "WEBHOOK_SECRET is not configured"
                if not self.secrets.configured
                else f"no secret for gateway {gateway} (WEBHOOK_SECRET is not configured)",
            )
        try:
            return body, verify(secret, request.headers, body, purpose=purpose)
        except SignatureError as exc:
            return self._reject("unauthorized", 401, str(exc))

    async def _once(
        self,
        request: web.Request,
        purpose: Purpose,
        answer: Callable[[web.Request, bytes], Awaitable[web.Response]],
    ) -> web.Response:
        """Authenticate the request for ``purpose`` and answer it, its signature used up: a
        second use is refused. Released unless the answer is a 2xx (a request refused stored
        nothing, so the gateway's identical retry is no replay)."""
        checked = await self._signed_body(request, purpose)
        if isinstance(checked, web.Response):
            return checked
        body, signed = checked
        if signed is None or self.replays is None:
            return await answer(request, body)
        try:
            first = await self.replays.claim(signed)
        except RedisError:
            return self._reject(
                "store_unavailable",
                503,
                "store unavailable, retry later",
                None,
                **{"Retry-After": str(self.retry_after_s)},
            )
        if not first:
            return self._reject(
                "replayed",
                401,
                "signature already used (each request is accepted once: sign a retry again, "
                "with the current time)",
            )
        response = await answer(request, body)
        if not 200 <= response.status < 300:
            await self.replays.release(signed)
        return response

    async def forget(self, request: web.Request) -> web.Response:
        """``POST /webhook/{gateway}/forget``: delete a customer's stored conversation data
        (the customer asked the gateway to); signed for this route (README)."""
        return await self._once(request, "forget", self._forget)

    async def handle(self, request: web.Request) -> web.Response:
        """``POST /webhook/{gateway}``: a signed message in (README: The webhook contract)."""
        return await self._once(request, "message", self._admit)

    async def _forget(self, request: web.Request, body: bytes) -> web.Response:
        try:
            asked = parse_forget(body)
        except PayloadError as exc:
            return self._reject("invalid", 400, str(exc), exc.field)
        if self.forgetter is None:
            return _error(404, "forgetting is not available here")
        gateway = request.match_info["gateway"]
        key = named_conversation_key(
            CHANNEL, gateway, asked.conversation_id, asked.user_id, asked.group
        )
        try:
            deleted = await self.forgetter.forget(key)
        except RedisError:
            return _error(
                503,
                "store unavailable, retry later",
                **{"Retry-After": str(self.retry_after_s)},
            )
        return web.json_response(
            {
                "status": "forgotten",
                "conversation_id": asked.conversation_id or asked.user_id,
                "deleted": deleted,
            }
        )

    async def _admit(self, request: web.Request, body: bytes) -> web.Response:
        gateway = request.match_info["gateway"]
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
            message = to_inbound(gateway, payload, self.default_callback_url, self.callback_policy)
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
                    "reason": admission.reason,
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
