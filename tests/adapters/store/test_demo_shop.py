"""The shipped demo shop: its data holds together, and lookups and search answer from it."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from adapters.store.data import make_demo_shop
from adapters.store.demo import CATALOGUE_FILE, DATA_PACKAGE, IDENTITIES_FILE, DemoShop
from core.priority import PriorityDetector
from core.shop import POLICY_TOPICS, Shop

IDENTITY_FORMS = {
    "telegram": re.compile(r"telegram:\d+"),
    "webhook": re.compile(r"webhook:demo:[a-z0-9]+"),
    "wechat": re.compile(r"wechat:o[A-Za-z0-9_-]{27}"),
}
STATUSES = {
    "pending_payment",
    "paid",
    "processing",
    "shipped",
    "delivered",
    "cancelled",
    "returned",
}
PAYMENTS = {
    "pending_payment": {"pending", "failed"},
    "paid": {"paid"},
    "processing": {"paid"},
    "shipped": {"paid"},
    "delivered": {"paid"},
    "cancelled": {"refunded", "failed"},
    "returned": {"refunded"},
}


@pytest.fixture(scope="module")
def shop() -> DemoShop:
    return DemoShop()


def test_it_implements_the_shop_port(shop: DemoShop) -> None:
    port: Shop = shop  # mypy checks the protocol
    assert port is shop


def test_the_shipped_data_has_the_promised_size(shop: DemoShop) -> None:
    assert 45 <= len(shop.products) <= 55
    assert len(shop.customers) == 100
    assert len(shop.orders) == 200
    assert sorted(shop.orders) == [str(n) for n in range(100001, 100201)]
    assert sorted(shop.customers) == [f"C{n:03d}" for n in range(1, 101)]
    assert set(shop.policies) >= set(POLICY_TOPICS)


def test_products_are_priced_in_dollars_and_a_few_are_sold_out(shop: DemoShop) -> None:
    for product in shop.products.values():
        assert product.currency == "USD"
        assert 0 < product.price < 1000
        assert product.stock >= 0
        assert product.name and len(product.description) > 20
    assert 1 <= sum(p.stock == 0 for p in shop.products.values()) <= 6


def test_customers_are_made_up_with_example_emails(shop: DemoShop) -> None:
    for customer in shop.customers.values():
        assert customer.email == f"{customer.id.lower()}@example.com"
        assert customer.name


def test_every_customer_is_linked_and_every_identity_form_is_used(shop: DemoShop) -> None:
    assert len(shop.identities) >= 100
    assert set(shop.identities.values()) == set(shop.customers)
    forms = Counter(identity.split(":")[0] for identity in shop.identities)
    assert set(forms) == set(IDENTITY_FORMS)
    for identity in shop.identities:
        assert IDENTITY_FORMS[identity.split(":")[0]].fullmatch(identity), identity


def test_orders_hold_together(shop: DemoShop) -> None:
    assert {o.status for o in shop.orders.values()} == STATUSES
    for order in shop.orders.values():
        assert order.customer_id in shop.customers
        assert order.payment_status in PAYMENTS[order.status], order.id
        assert 1 <= len(order.items) <= 3
        assert len({item.product_id for item in order.items}) == len(order.items)
        for item in order.items:
            assert shop.products[item.product_id].name == item.name
            assert item.quantity >= 1
        assert order.total == round(sum(i.quantity * i.unit_price for i in order.items), 2)
        assert order.currency == "USD"
        assert datetime.fromisoformat(order.created_at).strftime("%Y-%m") == "2026-11"
        assert order.shipping_address
        shipped = order.status in ("shipped", "delivered")
        assert (order.carrier is not None) == shipped == (order.tracking_number is not None)
        assert order.carrier in (None, "UPS", "DHL", "FedEx", "USPS")
        on_the_way = order.status in ("processing", "shipped")
        assert (order.estimated_delivery is not None) == on_the_way
        if order.estimated_delivery is not None:
            assert date.fromisoformat(order.estimated_delivery) > date(2026, 11, 1)


def test_tracking_numbers_look_like_their_carriers(shop: DemoShop) -> None:
    patterns = {
        "UPS": r"1Z[0-9A-Z]{16}",
        "DHL": r"\d{10}",
        "FedEx": r"\d{12}",
        "USPS": r"9400\d{18}",
    }
    numbers = [o.tracking_number for o in shop.orders.values() if o.tracking_number]
    assert len(numbers) == len(set(numbers))
    for order in shop.orders.values():
        if order.carrier is not None:
            assert order.tracking_number is not None
            assert re.fullmatch(patterns[order.carrier], order.tracking_number)


def test_every_demo_order_id_is_found_by_the_order_id_detector(shop: DemoShop) -> None:
    detector = PriorityDetector()
    for order_id in shop.orders:
        assert detector.detect(f"where is my order {order_id}").order_id == order_id
        assert detector.detect(f"订单号 {order_id} 到哪了").order_id == order_id


def test_every_policy_topic_reads_in_english_and_chinese(shop: DemoShop) -> None:
    for topic in POLICY_TOPICS:
        policy = shop.policies[topic]
        assert policy.version == "2026-11"
        assert set(policy.text) == {"en", "zh"}
        assert re.search(r"[\u4e00-\u9fff]", policy.in_locale("zh-CN"))
        assert policy.in_locale("en").isascii()
    assert "30 days" in shop.policies["returns"].text["en"]
    assert "/human" in shop.policies["contact"].text["en"]
    assert "support@example.com" in shop.policies["contact"].text["zh"]


async def test_identities_lead_to_customers_and_their_orders_newest_first(
    shop: DemoShop,
) -> None:
    assert await shop.customer_for("telegram:1001") == "C001"
    assert await shop.customer_for("webhook:demo:alice") == "C001"
    assert await shop.customer_for("telegram:999999") is None
    assert await shop.customer_for("") is None
    orders = await shop.orders_of("C001")
    assert orders and all(o.customer_id == "C001" for o in orders)
    assert [o.created_at for o in orders] == sorted((o.created_at for o in orders), reverse=True)
    assert sum([len(await shop.orders_of(c)) for c in shop.customers]) == 200
    assert await shop.orders_of("C999") == []


async def test_orders_products_and_policies_by_id(shop: DemoShop) -> None:
    order = await shop.order("100001")
    assert order is not None and order.id == "100001"
    assert await shop.order("999999") is None
    product = await shop.product("P001")
    assert product is not None and "Headphones" in product.name
    assert await shop.product("P999") is None
    policy = await shop.policy("shipping")
    assert policy is not None and "$9.99" in policy.text["en"]
    assert await shop.policy("gift_cards") is None


async def test_search_ranks_products_by_shared_words_ignoring_case_and_plurals(
    shop: DemoShop,
) -> None:
    [first, *_] = await shop.search_products("Wireless HEADPHONE", 5)
    assert first.name == "Aurora Wireless Noise-Cancelling Headphones"
    mice = await shop.search_products("do you have a mouse for my laptop?", 5)
    assert mice[0].name == "Glide Wireless Mouse"
    assert [p.name for p in await shop.search_products("running shoes", 1)] == [
        "Trailrunner Running Shoes"
    ]
    assert len(await shop.search_products("wireless", 2)) == 2
    assert await shop.search_products("the a of", 5) == []  # stopwords only
    assert await shop.search_products("zeppelin", 5) == []
    assert await shop.search_products("", 5) == []
    assert await shop.search_products("wireless", 0) == []


def test_the_files_load_as_package_resources() -> None:
    data = files(DATA_PACKAGE)
    assert json.loads(data.joinpath(CATALOGUE_FILE).read_text(encoding="utf-8"))["orders"]
    assert json.loads(data.joinpath(IDENTITIES_FILE).read_text(encoding="utf-8"))


async def test_an_identities_file_of_ones_own_replaces_the_shipped_one(tmp_path: Path) -> None:
    mine = tmp_path / "identities.json"
    mine.write_text(json.dumps({"telegram:424242": "C007"}), encoding="utf-8")
    shop = DemoShop(identities_path=mine)
    assert await shop.customer_for("telegram:424242") == "C007"
    assert await shop.customer_for("telegram:1001") is None
    assert len(shop.orders) == 200


def test_an_identity_of_an_unknown_customer_is_refused_without_naming_the_identity(
    tmp_path: Path,
) -> None:
    mine = tmp_path / "identities.json"
    mine.write_text(json.dumps({"telegram:424242": "C999"}), encoding="utf-8")
    with pytest.raises(ValueError, match="C999") as caught:
        DemoShop(identities_path=mine)
    assert "424242" not in str(caught.value)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda data: data.update(orders="none"),
        lambda data: data["orders"][0].pop("total"),
        lambda data: data["orders"][0].update(total="12.50"),
        lambda data: data["orders"][0].update(customer_id="C999"),
        lambda data: data["products"].append(dict(data["products"][0])),
        lambda data: data["policies"][0].update(text={}),
    ],
    ids=["no-list", "missing-field", "price-as-text", "stray-order", "duplicate", "no-text"],
)
def test_a_broken_data_file_stops_the_start_up(
    tmp_path: Path, breakage: Callable[[dict[str, Any]], object]
) -> None:
    data = json.loads(files(DATA_PACKAGE).joinpath(CATALOGUE_FILE).read_text(encoding="utf-8"))
    breakage(data)
    path = tmp_path / "shop.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"shop\.json"):
        DemoShop(data_path=path)


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "identities.json"
    path.write_text("{telegram:1: C001}", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        DemoShop(identities_path=path)


def test_the_generator_rewrites_the_shipped_files_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(make_demo_shop, "OUT", tmp_path)
    make_demo_shop.main()
    shipped = files(DATA_PACKAGE)
    for name in (CATALOGUE_FILE, IDENTITIES_FILE):
        assert (tmp_path / name).read_bytes() == shipped.joinpath(name).read_bytes(), name
