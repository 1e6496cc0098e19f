"""The demo shop: a :class:`core.shop.Shop` over two JSON files shipped with the project.

``data/demo_shop.json`` holds 50 products, 100 customers, 200 orders (ids ``100001`` up) and
every policy of :data:`core.shop.POLICY_TOPICS` in English and Chinese; ``data/identities.json``
links channel identities (``telegram:1001``, ``webhook:demo:alice``, ``wechat:<OpenID>``) to
customers. Both are made by ``data/make_demo_shop.py``. Either path can be replaced, so that a
deployment can link its own test accounts to demo customers.

The files are small: they are read and checked once, at construction, so a broken file stops
the start-up instead of a customer's conversation. Lookups are then dictionary reads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

from adapters.store.schema import order_from_json, policy_from_json, product_from_json
from core.shop import Order, Policy, Product

DATA_PACKAGE: Final = "adapters.store.data"
CATALOGUE_FILE: Final = "demo_shop.json"
IDENTITIES_FILE: Final = "identities.json"

_WORD: Final = re.compile(r"[^\W_]+")
# Words of a question that say nothing about the product ("do you have a ... for ...").
_STOPWORDS: Final = frozenset({
    "a", "an", "and", "any", "are", "at", "by", "can", "do", "does", "for", "from", "have",
    "has", "how", "i", "in", "is", "it", "me", "my", "need", "of", "on", "or", "please", "some",
    "that", "the", "there", "this", "to", "want", "what", "which", "with", "you", "your",
})  # fmt: skip
_NAME_WEIGHT: Final = 2  # a word of the name counts twice a word of the description


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    email: str


_T = TypeVar("_T", Product, Customer, Order)


class DemoShop:
    """The demo data in memory; the paths default to the files shipped in the package."""

    def __init__(
        self,
        data_path: str | os.PathLike[str] | None = None,
        identities_path: str | os.PathLike[str] | None = None,
    ) -> None:
        data = _read_json(data_path, CATALOGUE_FILE)
        links = _read_json(identities_path, IDENTITIES_FILE)
        source = str(data_path or CATALOGUE_FILE)
        try:
            products = _by_id([product_from_json(p) for p in _list(data, "products")])
            customers = _by_id([_customer(c) for c in _list(data, "customers")])
            orders = _by_id([order_from_json(o) for o in _list(data, "orders")])
            policies = {p.topic: p for p in map(policy_from_json, _list(data, "policies"))}
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc
        strays = sorted({o.customer_id for o in orders.values()} - customers.keys())
        if strays:
            raise ValueError(f"{source}: orders of unknown customers ({', '.join(strays[:3])})")
        self.products: Mapping[str, Product] = MappingProxyType(products)
        self.customers: Mapping[str, Customer] = MappingProxyType(customers)
        self.orders: Mapping[str, Order] = MappingProxyType(orders)
        self.policies: Mapping[str, Policy] = MappingProxyType(policies)
        self.identities: Mapping[str, str] = MappingProxyType(
            _identities(links, customers.keys(), str(identities_path or IDENTITIES_FILE))
        )
        by_customer: dict[str, list[Order]] = {}
        for order in sorted(orders.values(), key=lambda o: (o.created_at, o.id), reverse=True):
            by_customer.setdefault(order.customer_id, []).append(order)
        self._orders_of = by_customer
        self._words = {
            p.id: (_words(p.name), _words(p.description)) for p in self.products.values()
        }

    async def customer_for(self, identity: str) -> str | None:
        return self.identities.get(identity)

    async def order(self, order_id: str) -> Order | None:
        return self.orders.get(order_id)

    async def orders_of(self, customer_id: str) -> list[Order]:
        """The customer's orders, newest first."""
        return list(self._orders_of.get(customer_id, ()))

    async def product(self, product_id: str) -> Product | None:
        return self.products.get(product_id)

    async def search_products(self, query: str, limit: int = 5) -> list[Product]:
        """Products sharing words with ``query`` (case and plurals ignored), best first:
        a word found in the name counts twice one found in the description."""
        wanted = _words(query)
        scored = []
        for product_id, (name, description) in self._words.items():
            score = _NAME_WEIGHT * len(wanted & name) + len(wanted & description)
            if score:
                scored.append((-score, product_id))
        return [self.products[product_id] for _, product_id in sorted(scored)[: max(limit, 0)]]

    async def policy(self, topic: str) -> Policy | None:
        return self.policies.get(topic)


def _read_json(path: str | os.PathLike[str] | None, shipped: str) -> Any:
    if path is None:
        raw = files(DATA_PACKAGE).joinpath(shipped).read_text(encoding="utf-8")
    else:
        raw = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{path or shipped}: not valid JSON ({exc})") from exc


def _list(data: Any, name: str) -> list[Any]:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, list):
        raise ValueError(f"{name!r} must be a list")
    return value


def _customer(data: Any) -> Customer:
    if not isinstance(data, dict) or not all(
        isinstance(data.get(name), str) for name in ("id", "name", "email")
    ):
        raise ValueError("customer: 'id', 'name' and 'email' must be strings")
    return Customer(id=data["id"], name=data["name"], email=data["email"])


def _by_id(items: list[_T]) -> dict[str, _T]:
    by_id = {item.id: item for item in items}
    if len(by_id) != len(items):
        raise ValueError(f"duplicate {type(items[0]).__name__.lower()} ids")
    return by_id


def _identities(links: Any, customers: Collection[str], source: str) -> dict[str, str]:
    """``identity -> customer id``; every customer must exist (identities are not named in
    errors: they are personal data)."""
    if not isinstance(links, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in links.items()
    ):
        raise ValueError(f"{source}: must be a JSON object of identity -> customer id")
    unknown = sorted(set(links.values()).difference(customers))
    if unknown:
        raise ValueError(f"{source}: links to unknown customers ({', '.join(unknown[:3])})")
    return dict(links)


def _words(text: str) -> frozenset[str]:
    """Lower-cased words of two letters or more, stopwords left out, a plural ``s`` cut
    (``headphones`` -> ``headphone``)."""
    words = (w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in _STOPWORDS)
    return frozenset(
        w[:-1] if len(w) > 3 and w.endswith("s") and w[-2] != "s" else w for w in words
    )
