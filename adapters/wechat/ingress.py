"""``GET``/``POST /wechat``: the Official Account's URL check and its signed XML pushes.

A text message is queued like any other (``user_id`` = the customer's OpenID), then the push
waits up to ``passive_reply_s`` (under WeChat's 5 s) for the answer and returns it as the
passive XML reply; otherwise it answers ``success`` and the answer goes out later, as a
customer-service message, from the outbox. WeChat's retries of a message (also while the
first request is still open) are duplicates on ``MsgId``: they wait for the same answer, and
only one request can take it, so the customer never gets two.

When the answer is not ready and peak mode says it will take a while, the passive reply is
the acknowledgement (ticket and estimate) instead of ``success``. Other message types get a
short text reply at once; the subscribe event a greeting; other
events ``success``. With ``encrypt_type=aes`` (safe mode) pushes are decrypted after their
``msg_signature`` is checked, and passive replies are encrypted.

The query's signature does not cover the body, so it is good once and near its time
(:mod:`adapters.wechat.freshness`), and once an EncodingAESKey is configured only encrypted
pushes are taken: only ``msg_signature`` ties a body to WeChat. The checks run in the order
signature, timestamp, ``msg_signature``, nonce memory, so that nothing unauthenticated is
remembered.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any, Final, Protocol

from aiohttp import web
from multidict import MultiMapping

from adapters.wechat.crypto import SafeMode, WeChatCryptoError, WeChatSignatureError, verify
from adapters.wechat.freshness import PushFreshness
from adapters.wechat.messages import (
    MAX_XML_BYTES,
    WeChatXmlError,
    encrypted_reply,
    parse,
    text_reply,
)
from core.aio import read_limited
from core.errors import AdmissionRefused, StoreUnavailable
from core.metrics import Metrics
from core.models import InboundMessage, MessageMetadata, Reply
from core.queue import Admission

log = logging.getLogger("peakdesk.wechat")

CHANNEL: Final = "wechat"
MAX_TEXT: Final = 4000
# OpenIDs have 28 characters, account ids 15, MsgIds 20 digits: they become store keys.
MAX_ID_LENGTH: Final = 128
GREETING: Final = "您好，欢迎关注！有任何订单、物流、退款问题，直接发消息给我们即可。"
TEXT_ONLY: Final = "抱歉，目前我们只能处理文字消息，请用文字描述您的问题。"


class Admitter(Protocol):
    async def admit(
        self, message: InboundMessage, priority: int, *, wait_until: float = 0.0
    ) -> Admission: ...


class Detector(Protocol):
    def detect(self, text: str, metadata: MessageMetadata | None = None) -> Any: ...


class ReplyWaiter(Protocol):
    async def wait_for_reply(self, ticket_id: str, timeout: float) -> Reply | None: ...


class Acknowledger(Protocol):
    def acknowledgement(self, priority: int, locale: str | None) -> str | None: ...


class WeChatIngress:
    """The Official Account's push endpoint (see the module docstring)."""

    def __init__(
        self,
        queue: Admitter,
        detector: Detector,
        waiter: ReplyWaiter,
        metrics: Metrics,
        *,
        token: str,
        freshness: PushFreshness,
        safe_mode: SafeMode | None = None,
        passive_reply_s: float = 4.0,
        acks: Acknowledger | None = None,
    ) -> None:
        self.queue = queue
        self.detector = detector
        self.waiter = waiter
        self.metrics = metrics
        self.token = token
        self.freshness = freshness
        self.safe_mode = safe_mode
        self.passive_reply_s = passive_reply_s
        self.acks = acks

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/wechat", self.check_url), web.post("/wechat", self.handle)]

    def _reject(self, reason: str, status: int, message: str) -> web.Response:
        self.metrics.rejected.labels(CHANNEL, reason).inc()
        return web.json_response({"error": message}, status=status)

    async def check_url(self, request: web.Request) -> web.Response:
        """The URL check WeChat makes when the server is configured: echo ``echostr``, for a
        valid and fresh signature that was not used before."""
        try:
            signed = self._authenticate(request.query)
        except WeChatSignatureError as exc:
            return self._reject("unauthorized", 401, str(exc))
        refused = await self._first_use(signed, request.query["timestamp"])
        if refused is not None:
            return refused
        return web.Response(text=request.query.get("echostr", ""))

    def _authenticate(self, query: MultiMapping[str]) -> str:
        """The query's signature once it is valid and fresh (WeChatSignatureError if not)."""
        signed = query.get("signature")
        timestamp = query.get("timestamp", "")
        verify(signed, self.token, timestamp, query.get("nonce", ""))
        self.freshness.check_time(timestamp)
        assert signed is not None  # verify() refuses a missing one
        return signed

    async def _first_use(self, signed: str, timestamp: str) -> web.Response | None:
        """None when the signed query is used for the first time; else the refusal (401, or
        503 when the nonce memory is out of reach: WeChat retries)."""
        try:
            await self.freshness.claim(signed, timestamp)
        except WeChatSignatureError as exc:
            return self._reject("unauthorized", 401, str(exc))
        except StoreUnavailable:
            return self._reject("store_unavailable", 503, "cannot check the nonce, retry")
        return None

    async def handle(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        query = request.query
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        encrypted = query.get("encrypt_type") == "aes"
        checked = await self._checked_push(request, encrypted)
        if isinstance(checked, web.Response):
            return checked
        fields, signed = checked
        openid, account = fields["FromUserName"], fields["ToUserName"]
        kind = fields.get("MsgType", "")
        if kind == "event":
            event = fields.get("Event", "").lower()
            text = GREETING if event == "subscribe" else None
            return self._passive(fields, text, timestamp, nonce, encrypted)
        if kind != "text":
            return self._passive(fields, TEXT_ONLY, timestamp, nonce, encrypted)
        content, message_id = fields.get("Content", "").strip(), fields.get("MsgId", "")
        if not content or not message_id:
            return self._reject("invalid", 400, "a text message needs Content and MsgId")
        message = InboundMessage(
            channel=CHANNEL,
            account=account,
            message_id=message_id,
            user_id=openid,
            conversation_id=openid,
            text=content[:MAX_TEXT],
            reply_to={"openid": openid, "account": account},
        )
        priority = int(self.detector.detect(message.text, message.metadata).priority)
        passive_until = time.time() + self.passive_reply_s - (time.monotonic() - started)
        try:
            admission = await self.queue.admit(message, priority, wait_until=passive_until)
        except (AdmissionRefused, StoreUnavailable):
            # Not stored: a 5xx makes WeChat try again (3 tries in all), maybe with the same
            # query: the nonce must be good for that retry.
            await self.freshness.release(signed)
            return self._reject("store_unavailable", 503, "not stored, retry")
        if admission.status == "duplicate":
            self.metrics.duplicates.labels(CHANNEL).inc()
        elif admission.status == "throttled":
            self.metrics.throttled.labels(CHANNEL).inc()
            if not admission.notice:  # over the flood limit: no reply comes
                return self._passive(fields, None, timestamp, nonce, encrypted)
        else:
            self.metrics.admitted.labels(CHANNEL, str(priority)).inc()
        left = self.passive_reply_s - (time.monotonic() - started)
        reply = await self.waiter.wait_for_reply(admission.ticket_id, left) if left > 0 else None
        if reply is not None:
            return self._passive(fields, reply.text, timestamp, nonce, encrypted)
        # Not ready: under a backlog the passive reply is the acknowledgement (the first
        # request only: WeChat shows one reply per push), the answer follows as a message.
        ack = None
        if self.acks is not None and admission.status == "queued":
            ack = self.acks.acknowledgement(priority, message.metadata.locale)
        text = ack.format(ticket=admission.ticket_id) if ack else None
        return self._passive(fields, text, timestamp, nonce, encrypted)

    async def _checked_push(
        self, request: web.Request, encrypted: bool
    ) -> tuple[dict[str, str], str] | web.Response:
        """The fields of an authentic push seen for the first time, and its signature; or
        the refusal. The nonce memory comes last: a request failing an earlier check is not
        remembered (junk cannot fill the memory or use up WeChat's nonces)."""
        query = request.query
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        try:
            signed = self._authenticate(query)
        except WeChatSignatureError as exc:
            return self._reject("unauthorized", 401, str(exc))
        if self.safe_mode is not None and not encrypted:
            # The query's signature does not cover the body: only msg_signature does.
            return self._reject(
                "unauthorized", 401, "safe mode is on: only encrypt_type=aes pushes are taken"
            )
        if encrypted and self.safe_mode is None:
            return self._reject("invalid", 400, "safe mode push but WECHAT_AES_KEY is not set")
        if request.content_length is not None and request.content_length > MAX_XML_BYTES:
            return self._reject("too_large", 413, f"body over {MAX_XML_BYTES} bytes")
        try:
            body = await read_limited(request.content, MAX_XML_BYTES)
        except (ValueError, ConnectionError) as exc:  # a broken gzip, a client gone...
            return self._reject("invalid", 400, f"cannot read body: {type(exc).__name__}")
        if body is None:
            return self._reject("too_large", 413, f"body over {MAX_XML_BYTES} bytes")
        try:
            fields = parse(body)
            if self.safe_mode is not None:
                inner = self.safe_mode.decrypt(
                    fields.get("Encrypt", ""), query.get("msg_signature"), timestamp, nonce
                )
                fields = parse(inner.encode())
        except WeChatSignatureError as exc:
            return self._reject("unauthorized", 401, str(exc))
        except (WeChatXmlError, WeChatCryptoError) as exc:
            return self._reject("invalid", 400, str(exc))
        openid, account = fields.get("FromUserName", ""), fields.get("ToUserName", "")
        if not openid or not account:
            return self._reject("invalid", 400, "FromUserName and ToUserName are required")
        if max(len(openid), len(account), len(fields.get("MsgId", ""))) > MAX_ID_LENGTH:
            return self._reject(
                "invalid", 400, f"FromUserName, ToUserName, MsgId: over {MAX_ID_LENGTH} characters"
            )
        refused = await self._first_use(signed, timestamp)
        return refused if refused is not None else (fields, signed)

    def _passive(
        self,
        fields: dict[str, str],
        text: str | None,
        timestamp: str,
        nonce: str,
        encrypted: bool,
    ) -> web.Response:
        """The passive reply with ``text``, or ``success`` (nothing to say now)."""
        if text is None:
            return web.Response(text="success")
        xml = text_reply(fields["FromUserName"], fields["ToUserName"], text, int(time.time()))
        if encrypted:
            assert self.safe_mode is not None
            reply_nonce = secrets.token_hex(8)
            reply_ts = str(int(time.time()))
            sealed, signature = self.safe_mode.encrypt(xml, reply_ts, reply_nonce)
            xml = encrypted_reply(sealed, signature, reply_ts, reply_nonce)
        return web.Response(text=xml, content_type="application/xml")
