"""Pure converters: webhook JSON -> core InboundMessage, core Reply -> callback JSON."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from adapters.webhook.callback_url import CallbackPolicy, CallbackRefused
from core.models import InboundMessage, MessageMetadata, Reply

CHANNEL = "webhook"
GATEWAY_NAME = re.compile(r"[a-z0-9_-]{1,32}")
MAX_BODY_BYTES = 64 * 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control_characters(value: str) -> str:
    # Conversation keys separate an id from what follows with one (core.models.KEY_SEPARATOR).
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256),
    AfterValidator(_no_control_characters),
]
ShortText = Annotated[str, StringConstraints(max_length=256)]


class PayloadMetadata(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    vip: bool = False
    order_issue: bool = False
    payment_issue: bool = False
    order_id: ShortText | None = None
    product_id: ShortText | None = None
    locale: Annotated[str, StringConstraints(max_length=35)] | None = None
    # Several users share the conversation (a group chat): they see each other's history.
    group: bool = False


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
    """The body of ``POST /webhook/{gateway}/forget``: whose data to delete. A user's
    conversation (``user_id``, with the ``conversation_id`` the gateway named, if any), or a
    group's (``conversation_id`` and ``group``); ``conversation_id`` alone names the
    one-to-one conversation of the user of that id, as messages default it."""

    model_config = ConfigDict(strict=True, extra="ignore")

    conversation_id: Id | None = None
    user_id: Id | None = None
    group: bool = False


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


def parse_forget(body: bytes) -> ForgetPayload:
    """The validated body of a forget request; PayloadError when it names no conversation."""
    try:
        payload = ForgetPayload.model_validate_json(body)
    except ValidationError as exc:
        raise payload_error(exc) from None
    if payload.group and payload.conversation_id is None:
        raise PayloadError("conversation_id: required with group", "conversation_id")
    if payload.conversation_id is None and payload.user_id is None:
        raise PayloadError("conversation_id or user_id: one is required", "conversation_id")
    return payload


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
        group=meta.group,
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
