"""Orders, products and policies from JSON, checked field by field.

A store API is another system: a missing field or a price sent as text must surface as "the
store answered nonsense" at the boundary, not as a ``TypeError`` deep in a tool call, nor as a
wrong total shown to a customer. The demo shop loads its files through the same checks.

Errors are :class:`ValueError` naming the object and the field, never the value: values are
customer data, and the message may end up in a log.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, Literal

from core.shop import Order, OrderItem, Policy, Product

Kind = Literal["id", "str", "number", "int", "str?"]

# "id" takes a string or an integer (many stores number their orders) and keeps a string.
_ORDER: Final[Mapping[str, Kind]] = {
    "id": "id",
    "customer_id": "id",
    "status": "str",
    "total": "number",
    "currency": "str",
    "payment_status": "str",
    "carrier": "str?",
    "tracking_number": "str?",
    "estimated_delivery": "str?",
    "shipping_address": "str",
    "created_at": "str",
}
_ITEM: Final[Mapping[str, Kind]] = {
    "product_id": "id",
    "name": "str",
    "quantity": "int",
    "unit_price": "number",
}
_PRODUCT: Final[Mapping[str, Kind]] = {
    "id": "id",
    "name": "str",
    "price": "number",
    "currency": "str",
    "stock": "int",
    "description": "str",
}


def order_from_json(data: Any) -> Order:
    """An :class:`Order` from its JSON object (``items`` a list of objects)."""
    values = _fields(data, _ORDER, "order")
    items = data.get("items")
    if not isinstance(items, list):
        raise ValueError("order: 'items' must be a list")
    values["items"] = tuple(OrderItem(**_fields(item, _ITEM, "order item")) for item in items)
    return Order(**values)


def product_from_json(data: Any) -> Product:
    return Product(**_fields(data, _PRODUCT, "product"))


def policy_from_json(data: Any) -> Policy:
    """A :class:`Policy` from ``{"topic", "text": {locale: text}, "version"}``."""
    values = _fields(data, {"topic": "str"}, "policy")
    text = data.get("text")
    if (
        not isinstance(text, dict)
        or not text
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in text.items())
    ):
        raise ValueError("policy: 'text' must map locales to texts")
    version = data.get("version", "1")
    if isinstance(version, bool) or not isinstance(version, str | int):
        raise ValueError("policy: 'version' must be a string")
    return Policy(topic=values["topic"], text=dict(text), version=str(version))


def _fields(data: Any, kinds: Mapping[str, Kind], what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what}: not a JSON object")
    return {name: _value(data.get(name), kind, what, name) for name, kind in kinds.items()}


def _value(value: Any, kind: Kind, what: str, name: str) -> Any:
    if isinstance(value, bool):  # an int to Python, never a quantity or a price to a store
        pass
    elif kind == "str?" and value is None:
        return None
    elif kind in ("str", "str?") and isinstance(value, str):
        return value
    elif kind == "id" and isinstance(value, str | int):
        return str(value)
    elif kind == "int" and isinstance(value, int):
        return value
    elif kind == "number" and isinstance(value, int | float) and math.isfinite(value):
        return float(value)  # json.loads takes NaN and Infinity: no price is either
    raise ValueError(f"{what}: {name!r} is missing or not a {kind.rstrip('?')}")
