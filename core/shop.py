"""The shop's own data, as the bot may use it: the store port and its Redis cache.

Three kinds of data: orders, products and policies. A backend (the demo shop shipped with the
project, or a merchant's store API: ``adapters/store``) implements :class:`Shop`;
:class:`CachedShop` keeps products and policies in Redis for a day and orders for a minute,
shared by every process.

Authorisation is not here but in :class:`core.tools.CustomerTools`: the port can read any
order; the tools only ever show a customer their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.errors import PeakdeskError
from core.keys import Keys
from core.models import language

# The policy topics the bot knows about (a shop may publish more under other names).
POLICY_TOPICS: Final = (
    "returns",  # how to return an item, within how long
    "refunds",  # when and how money comes back
    "shipping",  # delivery options, times and costs
    "payment_methods",
    "cancellation",  # cancelling an order, fees
    "account",  # creating, editing, deleting an account, passwords
    "contact",  # how to reach a person, opening hours
    "invoices",
    "newsletter",
)


_T = TypeVar("_T")


class ShopUnavailable(PeakdeskError):
    """The store could not answer (down, timing out, circuit open): not "no such thing"."""


@dataclass(frozen=True, slots=True)
class OrderItem:
    product_id: str
    name: str
    quantity: int
    unit_price: float


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    customer_id: str
    status: str  # pending_payment, paid, processing, shipped, delivered, cancelled, returned
    items: tuple[OrderItem, ...]
    total: float
    currency: str
    payment_status: str  # pending, paid, failed, refunded
    carrier: str | None
    tracking_number: str | None
    estimated_delivery: str | None  # ISO date
    shipping_address: str
    created_at: str  # ISO date-time

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["items"] = [asdict(item) for item in self.items]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Order:
        values: dict[str, Any] = {name: data[name] for name in _ORDER_FIELDS if name in data}
        values["items"] = tuple(OrderItem(**item) for item in data.get("items") or ())
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    price: float
    currency: str
    stock: int
    description: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Product:
        values: dict[str, Any] = {name: data[name] for name in _PRODUCT_FIELDS if name in data}
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Policy:
    """One policy of the shop, with its text per locale (``en`` at least)."""

    topic: str
    text: dict[str, str] = field(default_factory=dict)
    version: str = "1"

    def in_locale(self, locale: str | None) -> str:
        lang = language(locale)
        return self.text.get(lang) or self.text.get("en") or next(iter(self.text.values()), "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        return cls(
            topic=str(data["topic"]),
            text=dict(data.get("text") or {}),
            version=str(data.get("version") or "1"),
        )


_ORDER_FIELDS: Final = tuple(Order.__dataclass_fields__)
_PRODUCT_FIELDS: Final = tuple(Product.__dataclass_fields__)


class Shop(Protocol):
    """The store port. Every method raises :class:`ShopUnavailable` when the store fails."""

    async def customer_for(self, identity: str) -> str | None:
        """The store customer linked to a channel identity (``telegram:<user id>``...)."""

    async def order(self, order_id: str) -> Order | None: ...

    async def orders_of(self, customer_id: str) -> list[Order]:
        """The customer's orders, newest first."""

    async def product(self, product_id: str) -> Product | None: ...

    async def search_products(self, query: str, limit: int = 5) -> list[Product]: ...

    async def policy(self, topic: str) -> Policy | None: ...


def identity_digest(identity: str) -> str:
    """How an identity names its cache key: the key names of a shared Redis need not show
    who talks to the shop."""
    return hashlib.blake2b(identity.encode(), digest_size=12).hexdigest()


class CachedShop:
    """A :class:`Shop` in front of another, caching in Redis (see the module docstring).

    Identity links and order lists are cached like orders (they change as rarely, and an
    order list must show a new order soon). A Redis failure only bypasses the cache.
    """

    def __init__(
        self,
        shop: Shop,
        redis: Redis,
        keys: Keys,
        *,
        catalogue_ttl_s: int = 24 * 3600,
        order_ttl_s: int = 60,
    ) -> None:
        self.shop = shop
        self.redis = redis
        self.keys = keys
        self.catalogue_ttl_s = catalogue_ttl_s
        self.order_ttl_s = order_ttl_s

    async def customer_for(self, identity: str) -> str | None:
        return await self._through(
            self.keys.shop("identity", identity_digest(identity)),
            lambda: self.shop.customer_for(identity),
            lambda customer: customer or "",
            lambda raw: raw or None,
            self.order_ttl_s,
        )

    async def order(self, order_id: str) -> Order | None:
        return await self._through(
            self.keys.shop("order", order_id),
            lambda: self.shop.order(order_id),
            lambda order: json.dumps(order.to_dict()) if order else "",
            lambda raw: Order.from_dict(json.loads(raw)) if raw else None,
            self.order_ttl_s,
        )

    async def orders_of(self, customer_id: str) -> list[Order]:
        return await self._through(
            self.keys.shop("orders", customer_id),
            lambda: self.shop.orders_of(customer_id),
            lambda orders: json.dumps([o.to_dict() for o in orders]),
            lambda raw: [Order.from_dict(item) for item in json.loads(raw)],
            self.order_ttl_s,
        )

    async def product(self, product_id: str) -> Product | None:
        return await self._through(
            self.keys.shop("product", product_id),
            lambda: self.shop.product(product_id),
            lambda product: json.dumps(product.to_dict()) if product else "",
            lambda raw: Product.from_dict(json.loads(raw)) if raw else None,
            self.catalogue_ttl_s,
        )

    async def search_products(self, query: str, limit: int = 5) -> list[Product]:
        return await self._through(
            self.keys.shop("search", f"{limit}:{' '.join(query.lower().split())}"),
            lambda: self.shop.search_products(query, limit),
            lambda products: json.dumps([p.to_dict() for p in products]),
            lambda raw: [Product.from_dict(item) for item in json.loads(raw)],
            self.catalogue_ttl_s,
        )

    async def policy(self, topic: str) -> Policy | None:
        return await self._through(
            self.keys.shop("policy", topic),
            lambda: self.shop.policy(topic),
            lambda policy: json.dumps(policy.to_dict()) if policy else "",
            lambda raw: Policy.from_dict(json.loads(raw)) if raw else None,
            self.catalogue_ttl_s,
        )

    async def _through(
        self,
        key: str,
        load: Callable[[], Awaitable[_T]],
        encode: Callable[[_T], str],
        decode: Callable[[str], _T],
        ttl_s: int,
    ) -> _T:
        """The cached value of ``key``, else ``load()`` cached for ``ttl_s``. "Nothing there"
        is cached too, for at most the order TTL: a new product shows up within a minute."""
        cached = await self._get(key)
        if cached is not None:
            try:
                return decode(cached)
            except (ValueError, TypeError, KeyError):  # written by another version: a miss
                pass
        value = await load()
        encoded = encode(value)
        await self._put(key, encoded, ttl_s if encoded else min(ttl_s, self.order_ttl_s))
        return value

    async def _get(self, key: str) -> str | None:
        try:
            value = await self.redis.get(key)
        except RedisError:
            return None
        return None if value is None else str(value)

    async def _put(self, key: str, value: str, ttl_s: int) -> None:
        with contextlib.suppress(RedisError):
            await self.redis.set(key, value, ex=ttl_s)
