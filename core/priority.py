"""Priority of an inbound message: the most urgent of its intent's priority and its metadata's.

Runs on the ingest path for every message, so it is keyword rules (:mod:`core.intents`) and one
order-id regex, with no model call: a few microseconds a message. The intent → priority map has
a default (:data:`DEFAULT_PRIORITY_MAP`) that operators override with a spec such as
``"complaint=0,track_order=2"`` (:func:`parse_priority_map`). Metadata a channel already knows
(VIP customer, order or payment problem flagged by the shop) can only make a message more
urgent, never less.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from core.intents import INTENTS, OTHER, detect_intent
from core.models import MessageMetadata, Priority

__all__ = [
    "DEFAULT_METADATA_PRIORITY",
    "DEFAULT_PRIORITY_MAP",
    "INTENTS",
    "Detection",
    "PriorityDetector",
    "parse_priority_map",
]

_URGENT_INTENTS: Final = (
    "payment_issue",
    "cancel_order",
    "change_order",
    "change_shipping_address",
)
_HIGH_INTENTS: Final = (
    "contact_human_agent",
    "complaint",
    "track_order",
    "get_refund",
    "track_refund",
)

DEFAULT_PRIORITY_MAP: Final[Mapping[str, Priority]] = MappingProxyType(
    {
        intent: (
            Priority.URGENT
            if intent in _URGENT_INTENTS
            else Priority.HIGH
            if intent in _HIGH_INTENTS
            else Priority.NORMAL
        )
        for intent in (*INTENTS, OTHER)
    }
)

# Metadata flags a channel may set, keyed as they appear in overrides and in Detection.reason.
DEFAULT_METADATA_PRIORITY: Final[Mapping[str, Priority]] = MappingProxyType(
    {
        "metadata:order_issue": Priority.URGENT,
        "metadata:payment_issue": Priority.URGENT,
        "metadata:vip": Priority.HIGH,
    }
)

_PRIORITY_NAMES: Final = {p.name.lower(): p for p in Priority} | {str(int(p)): p for p in Priority}

# An order id follows "order"/"purchase" (typos too; then optionally "number", "no.", "#", ":"),
# or a bare "#", or is a token such as ORD-12345. Matched on lower-cased text; the id is then cut
# from the original text to keep its case.
_ORDER_ID: Final = re.compile(
    r"(?:\b(?:ord[a-z]{0,3}|oder|oredr|roder|purch[a-z]{0,4}|puchase|purhase)\s*"
    r"(?:(?:number|num|no|id)\b\.?\s*)?[#:：]?\s*"
    r"|(?P<hash>\#)\s*"
    r"|订单号?[:：]?\s*"
    r"|\b(?=ord[a-z]*-?\d))"
    r"(?P<id>[a-z0-9][a-z0-9-]*)"
)
_INVOICE_INTENTS: Final = frozenset({"check_invoice", "get_invoice"})
_DIGIT: Final = re.compile(r"\d")
_MIN_ORDER_ID_LENGTH: Final = 4  # shorter numbers after "order" are quantities ("order 3 of")


def parse_priority_map(spec: str) -> dict[str, Priority]:
    """Parse overrides such as ``"complaint=0,track_order=high,metadata:vip=0"``.

    Keys are intents (:data:`INTENTS` or ``"other"``) or metadata flags
    (:data:`DEFAULT_METADATA_PRIORITY`); values are 0-2 or urgent/high/normal. Empty parts are
    ignored. Raises ValueError naming the part that is wrong.
    """
    overrides: dict[str, Priority] = {}
    for raw_part in spec.split(","):
        part = raw_part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip().lower()
        if not sep or not key or not value:
            raise ValueError(f"priority override {part!r}: expected NAME=PRIORITY")
        if key not in DEFAULT_PRIORITY_MAP and key not in DEFAULT_METADATA_PRIORITY:
            raise ValueError(f"priority override {part!r}: unknown intent or flag {key!r}")
        if value not in _PRIORITY_NAMES:
            raise ValueError(f"priority override {part!r}: priority must be 0, 1, 2 or a name")
        overrides[key] = _PRIORITY_NAMES[value]
    return overrides


@dataclass(frozen=True, slots=True)
class Detection:
    """What the ingest path learns from one message before queueing it."""

    priority: Priority
    intent: str  # one of INTENTS or "other"
    reason: str  # why this priority: "intent:payment_issue", "metadata:vip", ...
    order_id: str | None


class PriorityDetector:
    """Detects intent, priority and order id of inbound messages; safe to share across tasks."""

    def __init__(self, overrides: Mapping[str, Priority] | None = None) -> None:
        intent_map = dict(DEFAULT_PRIORITY_MAP)
        metadata_map = dict(DEFAULT_METADATA_PRIORITY)
        for key, priority in (overrides or {}).items():
            if key in intent_map:
                intent_map[key] = Priority(priority)
            elif key in metadata_map:
                metadata_map[key] = Priority(priority)
            else:
                raise ValueError(f"unknown intent or metadata flag in priority map: {key!r}")
        self._intent_priority: Final = intent_map
        self._order_issue: Final = metadata_map["metadata:order_issue"]
        self._payment_issue: Final = metadata_map["metadata:payment_issue"]
        self._vip: Final = metadata_map["metadata:vip"]

    def detect(self, text: str, metadata: MessageMetadata | None = None) -> Detection:
        """Classify one message. Never raises on any text, including empty or very long."""
        lowered = text.lower()
        order_id, after_hash = _extract_order_id(text, lowered)
        intent = detect_intent(lowered, has_order_id=order_id is not None)
        if after_hash and intent in _INVOICE_INTENTS:
            order_id = None  # "bill #37777" is an invoice number
        priority = self._intent_priority[intent]
        reason = f"intent:{intent}"
        if metadata is not None:
            priority, reason = self._apply_metadata(metadata, priority, reason)
        if order_id is None and metadata is not None:
            order_id = metadata.order_id
        return Detection(priority, intent, reason, order_id)

    def _apply_metadata(
        self, metadata: MessageMetadata, priority: Priority, reason: str
    ) -> tuple[Priority, str]:
        """Raise ``priority`` to that of any metadata flag that is more urgent (never lower it)."""
        flags = (
            (metadata.order_issue, self._order_issue, "metadata:order_issue"),
            (metadata.payment_issue, self._payment_issue, "metadata:payment_issue"),
            (metadata.vip, self._vip, "metadata:vip"),
        )
        for is_set, flag_priority, flag_reason in flags:
            if is_set and flag_priority < priority:
                priority, reason = flag_priority, flag_reason
        return priority, reason


def _extract_order_id(text: str, lowered: str) -> tuple[str | None, bool]:
    """The first order-id-looking token (4+ characters with a digit) in its original case, and
    whether it followed a bare "#" (which may number an invoice rather than an order)."""
    if _DIGIT.search(lowered) is None:
        return None, False
    for match in _ORDER_ID.finditer(lowered):
        candidate = match.group("id").rstrip("-")
        if len(candidate) >= _MIN_ORDER_ID_LENGTH and _DIGIT.search(candidate):
            # str.lower() keeps offsets except for a few non-ASCII letters ("İ").
            after_hash = match.group("hash") is not None
            if len(lowered) != len(text):
                return candidate.upper(), after_hash
            start = match.start("id")
            return text[start : start + len(candidate)], after_hash
    return None, False
