"""LLM tools over the shop, scoped to the customer who wrote the message.

The model may call ``get_order_status``, ``list_my_orders``, ``get_product_info``,
``get_policy`` and ``request_human`` (OpenAI ``tools`` format). Authorisation is enforced
here, in code, never in the prompt: the customer is the one linked to the channel identity of
the message (``telegram:<user id>``...), resolved by the store; no tool takes a customer id as
an argument, and an order of somebody else gets exactly the answer of an order that does not
exist. A customer's text can make the model ask for anything: it can only ever get what that
customer may see.

Tool results are JSON strings for the model. Bad calls (unknown tool, invalid JSON, missing
or wrong arguments) and store outages are answered as ``{"error": ...}`` results, never
raised: the model then apologises or asks for what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from core.shop import POLICY_TOPICS, Order, Shop, ShopUnavailable

ORDER_NOT_FOUND: Final = {
    "error": "order_not_found",
    "message": "There is no order with this id for this customer. Ask them to check the number.",
}
NOT_LINKED: Final = {
    "error": "customer_not_linked",
    "message": "This chat is not linked to a shop account, so no order can be looked up here."
    " Offer a person (request_human) or ask the customer to sign in on the shop's website.",
}
STORE_DOWN: Final = {
    "error": "store_unavailable",
    "message": "The shop's systems cannot be reached right now. Apologise and offer a person.",
}

TOOL_SPECS: Final[list[dict[str, Any]]] = [
    {
        "type": "function",
        "function": {
            "name": "get_order_status",
            "description": "Status, payment, items, carrier, tracking number and estimated "
            "delivery of one of the customer's own orders.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "description": "e.g. 100234"}},
                "required": ["order_id"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "list_my_orders",
            "description": "The customer's recent orders (id, date, status, total).",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_product_info",
            "description": "Name, price, stock and description of a product, by id or by "
            "words of its name.",
            "parameters": {
                "type": "object",
                "properties": {
                    "product_id": {"type": "string"},
                    "query": {"type": "string", "description": "words of the product's name"},
                },
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_policy",
            "description": "The shop's policy on a topic, in the customer's language.",
            "parameters": {
                "type": "object",
                "properties": {"topic": {"type": "string", "enum": list(POLICY_TOPICS)}},
                "required": ["topic"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "request_human",
            "description": "Hand the conversation to a member of the support team, when the "
            "customer asks for a person or you cannot help.",
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string"}},
                "required": ["reason"],
                "additionalProperties": False,
            },
        },
    },
]
TOOL_NAMES: Final = frozenset(spec["function"]["name"] for spec in TOOL_SPECS)
RECENT_ORDERS: Final = 10
# Tools whose answer is about the customer: an answer that used one is never shared.
PERSONAL_TOOLS: Final = frozenset({"get_order_status", "list_my_orders", "request_human"})
SHOP_TOOL_SPECS: Final = [s for s in TOOL_SPECS if s["function"]["name"] not in PERSONAL_TOOLS]


class BadArguments(ValueError):
    pass


def order_summary(order: Order) -> dict[str, Any]:
    """What the model (and the customer) may see of one of their orders: no address."""
    return {
        "order_id": order.id,
        "status": order.status,
        "payment_status": order.payment_status,
        "items": [{"name": item.name, "quantity": item.quantity} for item in order.items],
        "total": order.total,
        "currency": order.currency,
        "carrier": order.carrier,
        "tracking_number": order.tracking_number,
        "estimated_delivery": order.estimated_delivery,
        "ordered_at": order.created_at,
    }


class ShopTools:
    """The tools that answer for no customer: the shop's products and policies. What the model
    gets for a question asked on behalf of many customers (``core.canonical``): it can read
    nothing of anyone, so ``used_personal`` stays False and ``human_reason`` None."""

    specs: list[dict[str, Any]] = SHOP_TOOL_SPECS

    def __init__(self, shop: Shop, locale: str | None = None) -> None:
        self.shop = shop
        self.locale = locale
        self.human_reason: str | None = None  # set when the model asked for a person
        self.used_personal = False  # a tool answered with this customer's own data
        self._tools: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "get_product_info": self._product_info,
            "get_policy": self._policy,
        }

    async def call(self, name: str, arguments: str | None) -> str:
        """Run one tool call of the model; the result (or error) as JSON for the model."""
        tool = self._tools.get(name)
        if tool is not None and name in PERSONAL_TOOLS:
            self.used_personal = True
        if tool is None:
            result: dict[str, Any] = {
                "error": "unknown_tool",
                "message": f"No tool named {name[:40]!r}; use one of: "
                + ", ".join(sorted(TOOL_NAMES)),
            }
        else:
            try:
                args = json.loads(arguments or "{}")
                if not isinstance(args, dict):
                    raise BadArguments("arguments must be a JSON object")
                result = await tool(args)
            except ValueError as exc:  # BadArguments, and JSON that does not parse
                result = {"error": "invalid_arguments", "message": str(exc)[:200]}
            except ShopUnavailable:
                result = dict(STORE_DOWN)
        return json.dumps(result, ensure_ascii=False)

    async def _product_info(self, args: dict[str, Any]) -> dict[str, Any]:
        product_id = args.get("product_id")
        query = args.get("query")
        if isinstance(product_id, str) and product_id.strip():
            product = await self.shop.product(product_id.strip())
            if product is not None:
                return {"products": [product.to_dict()]}
        if isinstance(query, str) and query.strip():
            found = await self.shop.search_products(query.strip()[:200], 3)
            return {"products": [p.to_dict() for p in found]}
        if product_id is None and query is None:
            raise BadArguments("give product_id or query")
        return {"products": []}

    async def _policy(self, args: dict[str, Any]) -> dict[str, Any]:
        topic = _string(args, "topic")
        if topic not in POLICY_TOPICS:
            raise BadArguments(f"topic must be one of: {', '.join(POLICY_TOPICS)}")
        policy = await self.shop.policy(topic)
        if policy is None:
            return {"error": "no_policy", "message": f"The shop has no {topic} policy on file."}
        return {"topic": topic, "text": policy.in_locale(self.locale)}


class CustomerTools(ShopTools):
    """The tools of one message: its customer is fixed at construction, from its identity."""

    specs = TOOL_SPECS

    def __init__(self, shop: Shop, identity: str, locale: str | None = None) -> None:
        super().__init__(shop, locale)
        self.identity = identity
        self._customer: tuple[str | None] | None = None
        self._tools |= {
            "get_order_status": self._order_status,
            "list_my_orders": self._my_orders,
            "request_human": self._request_human,
        }

    async def customer(self) -> str | None:
        """The store customer of this message (looked up once)."""
        if self._customer is None:
            self._customer = (await self.shop.customer_for(self.identity),)
        return self._customer[0]

    async def own_order(self, order_id: str) -> Order | None:
        """The order if it exists and belongs to this customer, else None (either way)."""
        customer = await self.customer()
        if customer is None:
            return None
        order = await self.shop.order(order_id.strip().lstrip("#"))
        return order if order is not None and order.customer_id == customer else None

    # -- the customer's own tools ---------------------------------------------------------

    async def _order_status(self, args: dict[str, Any]) -> dict[str, Any]:
        order_id = _string(args, "order_id")
        if await self.customer() is None:
            return dict(NOT_LINKED)
        order = await self.own_order(order_id)
        return order_summary(order) if order is not None else dict(ORDER_NOT_FOUND)

    async def _my_orders(self, args: dict[str, Any]) -> dict[str, Any]:
        customer = await self.customer()
        if customer is None:
            return dict(NOT_LINKED)
        orders = (await self.shop.orders_of(customer))[:RECENT_ORDERS]
        return {
            "orders": [
                {
                    "order_id": o.id,
                    "ordered_at": o.created_at,
                    "status": o.status,
                    "total": o.total,
                    "currency": o.currency,
                }
                for o in orders
            ]
        }

    async def _request_human(self, args: dict[str, Any]) -> dict[str, Any]:
        self.human_reason = str(args.get("reason") or "asked by the assistant")[:200]
        return {"ok": True, "message": "A member of the support team will take over."}


def _string(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadArguments(f"{name} is required (a string)")
    return value.strip()[:100]
