"""Pure converters: webhook JSON -> core InboundMessage, core Reply -> callback JSON."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from adapters.webhook.callback_url import CallbackPolicy, CallbackRefused
from core.models import InboundMessage, MessageMetadata, Reply

CHANNEL = "webhook"
GATEWAY_NAME = re.compile(r"[a-z0-9_-]{1,32}")
MAX_BODY_BYTES = 64 * 1024

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
ShortText = Annotated[str, StringConstraints(max_length=256)]


class PayloadMetadata(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    vip: bool = False
    order_issue: bool = False
    payment_issue: bool = False
    order_id: ShortText | None = None
    product_id: ShortText | None = None
    locale: Annotated[str, StringConstraints(max_length=35)] | None = None


class WebhookPayload(BaseModel):
    """The inbound JSON body of ``POST /webhook/{gateway}`` (unknown fields are ignored)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    message_id: Id
    user_id: Id
    text: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    conversation_id: Id | None = None
    callback_url: (
        Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s/?#]+[^\s]*$")]
        | None
    ) = None
    metadata: PayloadMetadata = Field(default_factory=PayloadMetadata)


class ForgetPayload(BaseModel):
    """The body of ``POST /webhook/{gateway}/forget``: whose data to delete."""

    model_config = ConfigDict(strict=True, extra="ignore")

    conversation_id: Id | None = None
    user_id: Id | None = None


class PayloadError(ValueError):
    """The body is not valid: ``field`` names the offending field ("body" for bad JSON)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def payload_error(exc: ValidationError) -> PayloadError:
    """The first problem pydantic found in a JSON body, naming its field (``body`` when the
    body is no JSON object)."""
    error = exc.errors(include_url=False, include_input=False)[0]
    if error["type"] == "json_invalid" or not error["loc"]:
        return PayloadError("body must be a JSON object", "body")
    field = ".".join(str(part) for part in error["loc"])
    return PayloadError(f"{field}: {error['msg']}", field)


def parse_payload(body: bytes) -> WebhookPayload:
    """Validate the raw JSON body; raise PayloadError with the first problem found."""
    try:
        payload = WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        raise payload_error(exc) from None
    if not payload.text.strip():
        raise PayloadError("text: must not be blank", "text")
    return payload


def parse_forget(body: bytes) -> str:
    """The conversation id a forget request names (``user_id`` when it names no conversation,
    as messages default it); PayloadError otherwise."""
    try:
        payload = ForgetPayload.model_validate_json(body)
    except ValidationError as exc:
        raise payload_error(exc) from None
    conversation = payload.conversation_id or payload.user_id
    if conversation is None:
        raise PayloadError("conversation_id or user_id: one is required", "conversation_id")
    return conversation


def to_inbound(
    gateway: str,
    payload: WebhookPayload,
    default_callback_url: str | None,
    callbacks: CallbackPolicy,
) -> InboundMessage:
    """The core message for a validated payload; PayloadError when no reply route exists, or
    when ``callbacks`` refuses the payload's callback URL."""
    callback_url = payload.callback_url or default_callback_url
    if not callback_url:
        raise PayloadError(
            "callback_url: required because WEBHOOK_CALLBACK_URL is not set", "callback_url"
        )
    try:
        callbacks.vet(callback_url)
    except CallbackRefused as exc:
        raise PayloadError(f"callback_url: {exc}", "callback_url") from None
    meta = payload.metadata
    return InboundMessage(
        channel=CHANNEL,
        account=gateway,
        message_id=payload.message_id,
        user_id=payload.user_id,
        conversation_id=payload.conversation_id or payload.user_id,
        text=payload.text,
        metadata=MessageMetadata(
            vip=meta.vip,
            order_issue=meta.order_issue,
            payment_issue=meta.payment_issue,
            order_id=meta.order_id,
            product_id=meta.product_id,
            locale=meta.locale,
        ),
        reply_to={"callback_url": callback_url},
    )


def callback_body(reply: Reply) -> dict[str, Any]:
    """The JSON a gateway receives for a reply (also the ``reply`` of a ``?wait`` answer)."""
    return {
        "message_id": reply.message_id,
        "message_ids": reply.answered_ids,
        "conversation_id": reply.conversation_id,
        "user_id": reply.user_id,
        "ticket_id": reply.ticket_id,
        "reply_id": reply.delivery_id,
        "text": reply.text,
        "source": reply.source.value,
        "priority": reply.priority,
    }
