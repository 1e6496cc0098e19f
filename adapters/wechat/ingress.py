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
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any, Final, Protocol

from aiohttp import web

from adapters.wechat.crypto import SafeMode, WeChatCryptoError, WeChatSignatureError, verify
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
        safe_mode: SafeMode | None = None,
        passive_reply_s: float = 4.0,
        acks: Acknowledger | None = None,
    ) -> None:
        self.queue = queue
        self.detector = detector
        self.waiter = waiter
        self.metrics = metrics
        self.token = token
        self.safe_mode = safe_mode
        self.passive_reply_s = passive_reply_s
        self.acks = acks

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/wechat", self.check_url), web.post("/wechat", self.handle)]

    def _reject(self, reason: str, status: int, message: str) -> web.Response:
        self.metrics.rejected.labels(CHANNEL, reason).inc()
        return web.json_response({"error": message}, status=status)

    async def check_url(self, request: web.Request) -> web.Response:
        """The URL check WeChat makes when the server is configured: echo ``echostr``."""
        query = request.query
        try:
            verify(
                query.get("signature"),
                self.token,
                query.get("timestamp", ""),
                query.get("nonce", ""),
            )
        except WeChatSignatureError as exc:
            return self._reject("unauthorized", 401, str(exc))
        return web.Response(text=query.get("echostr", ""))

    async def handle(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        query = request.query
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        try:
            verify(query.get("signature"), self.token, timestamp, nonce)
        except WeChatSignatureError as exc:
            return self._reject("unauthorized", 401, str(exc))
        if request.content_length is not None and request.content_length > MAX_XML_BYTES:
            return self._reject("too_large", 413, f"body over {MAX_XML_BYTES} bytes")
        try:
            body = await read_limited(request.content, MAX_XML_BYTES)
        except (ValueError, ConnectionError) as exc:  # a broken gzip, a client gone...
            return self._reject("invalid", 400, f"cannot read body: {type(exc).__name__}")
        if body is None:
            return self._reject("too_large", 413, f"body over {MAX_XML_BYTES} bytes")
        encrypted = query.get("encrypt_type") == "aes"
        if encrypted and self.safe_mode is None:
            return self._reject("invalid", 400, "safe mode push but WECHAT_AES_KEY is not set")
        try:
            fields = parse(body)
            if encrypted:
                assert self.safe_mode is not None
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
            # Not stored: a 5xx makes WeChat try again (3 tries in all).
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
