"""Templated answers: the questions whose right answer is the shop's own data, without an LLM.

Delivery options and times, payment methods, the refund policy, cancellation fees, account
how-tos, how to reach a person, and the status of an order when the message names it and it
belongs to the customer. A template is text per intent and locale (``en`` and ``zh`` shipped)
with fields filled from the store: ``{policy}`` (the policy of the intent's topic, in the
customer's language) and, for orders, ``{order_id}``, ``{status}``, ``{items}``, ``{total}``,
``{delivery}``. Shops replace any of them with ``PEAKDESK_TEMPLATE_FILE`` (JSON
``{"intent": {"en": "...", "zh": "..."}}``, merged over the shipped ones).

``PEAKDESK_TEMPLATES`` chooses when they answer: ``never``; ``fallback`` (the default: when the
LLM is unavailable, instead of the apology); ``always`` (before the LLM: cheapest at peak).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal, Protocol

from redis.exceptions import RedisError

from core.models import InboundMessage, language
from core.priority import PriorityDetector
from core.shop import Order, Shop
from core.state import ConversationState, Turn
from core.tools import CustomerTools

log = logging.getLogger("peakdesk.templates")

TemplateMode = Literal["never", "fallback", "always"]

# Intents answered from one policy topic.
POLICY_INTENTS: Final = {
    "delivery_options": "shipping",
    "delivery_period": "shipping",
    "check_payment_methods": "payment_methods",
    "check_refund_policy": "refunds",
    "check_cancellation_fee": "cancellation",
    "contact_customer_service": "contact",
    "contact_human_agent": "contact",
    "create_account": "account",
    "delete_account": "account",
    "edit_account": "account",
    "recover_password": "account",
    "registration_problems": "account",
    "switch_account": "account",
    "newsletter_subscription": "newsletter",
    "check_invoice": "invoices",
    "get_invoice": "invoices",
}
ORDER_INTENTS: Final = frozenset({"track_order"})

DEFAULT_TEMPLATES: Final[dict[str, dict[str, str]]] = {
    "delivery_options": {
        "en": "Here are our delivery options: {policy}",
        "zh": "配送方式：{policy}",
    },
    "delivery_period": {"en": "Delivery times: {policy}", "zh": "配送时效：{policy}"},
    "check_payment_methods": {"en": "Payment methods: {policy}", "zh": "支付方式：{policy}"},
    "check_refund_policy": {"en": "Our refund policy: {policy}", "zh": "退款政策：{policy}"},
    "check_cancellation_fee": {
        "en": "About cancelling an order: {policy}",
        "zh": "关于取消订单：{policy}",
    },
    "contact_customer_service": {"en": "How to reach us: {policy}", "zh": "联系我们：{policy}"},
    "contact_human_agent": {
        "en": "How to reach a person: {policy}",
        "zh": "联系人工客服：{policy}",
    },
    **{
        intent: {"en": "{policy}", "zh": "{policy}"}
        for intent in (
            "create_account",
            "delete_account",
            "edit_account",
            "recover_password",
            "registration_problems",
            "switch_account",
            "newsletter_subscription",
            "check_invoice",
            "get_invoice",
        )
    },
    "track_order": {
        "en": "Your order {order_id} ({items}, {total}) {status}.{delivery}",
        "zh": "您的订单 {order_id}（{items}，{total}）{status}。{delivery}",
    },
}

STATUS_TEXT: Final[dict[str, dict[str, str]]] = {
    "pending_payment": {"en": "is waiting for payment", "zh": "等待付款"},
    "paid": {"en": "is paid and will be prepared soon", "zh": "已付款，即将备货"},
    "processing": {"en": "is being prepared", "zh": "正在备货"},
    "shipped": {"en": "has shipped", "zh": "已发货"},
    "delivered": {"en": "was delivered", "zh": "已送达"},
    "cancelled": {"en": "was cancelled", "zh": "已取消"},
    "returned": {"en": "was returned", "zh": "已退货"},
}
DELIVERY_TEXT: Final = {
    "carrier": {
        "en": " Carrier: {carrier}, tracking number {tracking}.",
        "zh": "承运商：{carrier}，运单号 {tracking}。",
    },
    "eta": {"en": " Estimated delivery: {eta}.", "zh": "预计送达：{eta}。"},
}


def load_templates(path: str | None) -> dict[str, dict[str, str]]:
    """The shipped templates with a shop's file merged over them (per intent and locale).

    Raises ValueError naming the problem when the file is not valid.
    """
    templates = {intent: dict(texts) for intent, texts in DEFAULT_TEMPLATES.items()}
    if not path:
        return templates
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read templates from {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("the template file must hold a JSON object")
    for intent, texts in data.items():
        if intent not in POLICY_INTENTS and intent not in ORDER_INTENTS:
            raise ValueError(f"template for {intent!r}: not an intent with a templated answer")
        if not isinstance(texts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in texts.items()
        ):
            raise ValueError(f"template for {intent!r}: an object of locale -> text")
        for text in texts.values():
            _check_fields(intent, text)
        templates.setdefault(intent, {}).update(texts)
    return templates


_ALLOWED: Final = {
    "policy": frozenset({"policy"}),
    "order": frozenset({"order_id", "status", "items", "total", "delivery"}),
}


def _check_fields(intent: str, text: str) -> None:
    allowed = _ALLOWED["order" if intent in ORDER_INTENTS else "policy"]
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise ValueError(f"template for {intent!r}: {exc}") from exc
    unknown = names - allowed
    if unknown:
        raise ValueError(
            f"template for {intent!r}: unknown field(s) {sorted(unknown)}; use {sorted(allowed)}"
        )


class TemplateAnswers:
    """Builds templated answers from the store (see the module docstring)."""

    def __init__(self, shop: Shop, templates: Mapping[str, Mapping[str, str]] | None = None):
        self.shop = shop
        self.templates = templates if templates is not None else DEFAULT_TEMPLATES

    def covers(self, intent: str) -> bool:
        return intent in POLICY_INTENTS or intent in ORDER_INTENTS

    async def answer(
        self, intent: str, tools: CustomerTools, order_id: str | None, locale: str | None
    ) -> str | None:
        """The templated answer, or None when this message has none (no such template, no
        order id, not the customer's order, no policy on file). Raises ShopUnavailable."""
        texts = self.templates.get(intent)
        if not texts:
            return None
        lang = language(locale)
        text = texts.get(lang) or texts.get("en")
        if text is None:
            return None
        if intent in ORDER_INTENTS:
            if order_id is None:
                return None
            order = await tools.own_order(order_id)
            return None if order is None else text.format(**_order_fields(order, lang))
        policy = await self.shop.policy(POLICY_INTENTS[intent])
        if policy is None:
            return None
        return text.format(policy=policy.in_locale(locale))


def _order_fields(order: Order, lang: str) -> dict[str, str]:
    sep = "、" if lang == "zh" else ", "
    items = sep.join(
        f"{item.quantity} × {item.name}" if item.quantity > 1 else item.name for item in order.items
    )
    status = STATUS_TEXT.get(order.status, {}).get(lang, order.status)
    delivery = ""
    if order.carrier and order.tracking_number and order.status in ("shipped", "delivered"):
        delivery += DELIVERY_TEXT["carrier"][lang].format(
            carrier=order.carrier, tracking=order.tracking_number
        )
    if order.estimated_delivery and order.status in ("paid", "processing", "shipped"):
        delivery += DELIVERY_TEXT["eta"][lang].format(eta=order.estimated_delivery)
    return {
        "order_id": order.id,
        "status": status,
        "items": items,
        "total": f"{order.total:.2f} {order.currency}",
        "delivery": delivery,
    }


class Pressure(Protocol):
    """What instant answers ask of peak mode (:class:`core.peak.PeakMonitor`)."""

    def acknowledgement(self, priority: int, locale: str | None) -> str | None: ...


INSTANT_TIMEOUT_S: Final = 0.5  # of the store, before the message is queued instead


class InstantAnswers:
    """Templated answers given at admission, when the queue would make the customer wait.

    While a new message would be acknowledged (its full answer is far off), a message a
    template answers (policies, the status of the customer's own order) is answered at once
    instead of joining the queue, without the LLM. The turn is kept in the conversation's
    history, so a follow-up question has the context.
    """

    def __init__(
        self,
        templates: TemplateAnswers,
        detector: PriorityDetector,
        pressure: Pressure,
        state: ConversationState,
    ) -> None:
        self.templates = templates
        self.detector = detector
        self.pressure = pressure
        self.state = state

    async def answer(self, message: InboundMessage, priority: int) -> str | None:
        locale = message.metadata.locale
        if self.pressure.acknowledgement(priority, locale) is None:
            return None  # the queue answers soon enough, with the full context
        detection = self.detector.detect(message.text, message.metadata)
        if not self.templates.covers(detection.intent):
            return None
        tools = CustomerTools(self.templates.shop, message.identity, locale)
        try:
            async with asyncio.timeout(INSTANT_TIMEOUT_S):
                return await self.templates.answer(
                    detection.intent, tools, detection.order_id, locale
                )
        except Exception as exc:  # any trouble: the message is queued as usual
            log.info("instant answer skipped (%s)", type(exc).__name__)
            return None

    async def answered(self, message: InboundMessage, text: str) -> None:
        turns: list[Turn] = [
            {"role": "user", "content": message.text},
            {"role": "assistant", "content": text},
        ]
        with contextlib.suppress(RedisError):  # the answer is out; history is a nicety
            await self.state.record_turn(message.conversation_key, turns)
