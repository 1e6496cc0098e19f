"""Customer-scoped tools and templated answers, against the demo shop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.store.demo import DemoShop
from core.shop import Order, Policy, Product, ShopUnavailable
from core.templates import TemplateAnswers, load_templates
from core.tools import TOOL_NAMES, TOOL_SPECS, CustomerTools

ALICE = "webhook:demo:alice"  # customer C001: orders 100002 (delivered), 100158 (shipped)
BOB_ORDER = "100026"  # customer C002's


@pytest.fixture(scope="module")
def demo() -> DemoShop:
    return DemoShop()


async def call(tools: CustomerTools, name: str, **args: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(await tools.call(name, json.dumps(args)))
    return result


def test_tool_specs_are_the_openai_function_format() -> None:
    assert {
        "get_order_status",
        "list_my_orders",
        "get_product_info",
        "get_policy",
        "request_human",
    } == TOOL_NAMES
    for spec in TOOL_SPECS:
        assert spec["type"] == "function"
        assert spec["function"]["parameters"]["type"] == "object"
        assert "customer" not in json.dumps(spec["function"]["parameters"])  # never an argument


async def test_an_order_of_the_customer_is_shown_without_the_address(demo: DemoShop) -> None:
    tools = CustomerTools(demo, ALICE)
    order = await call(tools, "get_order_status", order_id="#100158")
    assert order["order_id"] == "100158" and order["status"] == "shipped"
    assert order["carrier"] == "FedEx" and order["tracking_number"] == "793343217053"
    assert order["items"] == [{"name": "Apex Fitness Smartwatch", "quantity": 2}]
    assert "shipping_address" not in json.dumps(order) and "Street" not in json.dumps(order)
    mine = await call(tools, "list_my_orders")
    assert [o["order_id"] for o in mine["orders"]] == ["100158", "100002"]


async def test_another_customers_order_looks_exactly_like_a_missing_one(demo: DemoShop) -> None:
    tools = CustomerTools(demo, ALICE)
    theirs = await tools.call("get_order_status", json.dumps({"order_id": BOB_ORDER}))
    missing = await tools.call("get_order_status", json.dumps({"order_id": "999999"}))
    assert theirs == missing
    assert json.loads(theirs)["error"] == "order_not_found"


async def test_a_chat_without_a_linked_account_sees_no_order(demo: DemoShop) -> None:
    tools = CustomerTools(demo, "telegram:424242")
    assert (await call(tools, "get_order_status", order_id="100158"))["error"] == (
        "customer_not_linked"
    )
    assert (await call(tools, "list_my_orders"))["error"] == "customer_not_linked"
    # What is not personal still works.
    assert "30 days" in (await call(tools, "get_policy", topic="returns"))["text"]


async def test_bad_calls_are_answered_as_errors_not_raised(demo: DemoShop) -> None:
    tools = CustomerTools(demo, ALICE)
    assert json.loads(await tools.call("delete_all_orders", "{}"))["error"] == "unknown_tool"
    assert json.loads(await tools.call("get_order_status", "{not json"))["error"] == (
        "invalid_arguments"
    )
    assert json.loads(await tools.call("get_order_status", "[1]"))["error"] == "invalid_arguments"
    assert (await call(tools, "get_order_status"))["error"] == "invalid_arguments"
    assert (await call(tools, "get_policy", topic="secrets"))["error"] == "invalid_arguments"
    assert (await call(tools, "get_product_info"))["error"] == "invalid_arguments"


async def test_products_policies_and_request_human(demo: DemoShop) -> None:
    tools = CustomerTools(demo, ALICE, locale="zh-CN")
    found = await call(tools, "get_product_info", query="robot vacuum")
    assert found["products"][0]["name"] == "Robo Vac S2 Robot Vacuum"
    by_id = await call(tools, "get_product_info", product_id=found["products"][0]["id"])
    assert by_id["products"] == found["products"][:1]
    policy = await call(tools, "get_policy", topic="payment_methods")
    assert policy["text"] == demo.policies["payment_methods"].text["zh"]
    assert tools.human_reason is None
    assert (await call(tools, "request_human", reason="wants a manager"))["ok"] is True
    assert tools.human_reason == "wants a manager"


class DownShop:
    async def customer_for(self, identity: str) -> str | None:
        raise ShopUnavailable("down")

    async def order(self, order_id: str) -> Order | None:
        raise ShopUnavailable("down")

    async def orders_of(self, customer_id: str) -> list[Order]:
        raise ShopUnavailable("down")

    async def product(self, product_id: str) -> Product | None:
        raise ShopUnavailable("down")

    async def search_products(self, query: str, limit: int = 5) -> list[Product]:
        raise ShopUnavailable("down")

    async def policy(self, topic: str) -> Policy | None:
        raise ShopUnavailable("down")


async def test_a_store_outage_is_told_to_the_model() -> None:
    tools = CustomerTools(DownShop(), ALICE)
    assert (await call(tools, "get_order_status", order_id="100158"))["error"] == (
        "store_unavailable"
    )


async def test_templates_fill_in_the_customers_order_and_the_policies(demo: DemoShop) -> None:
    answers = TemplateAnswers(demo, load_templates(None))
    alice = CustomerTools(demo, ALICE)
    text = await answers.answer("track_order", alice, "100158", "en")
    assert text == (
        "Your order 100158 (2 × Apex Fitness Smartwatch, 298.00 USD) has shipped. Carrier: FedEx,"
        " tracking number 793343217053. Estimated delivery: 2026-11-28."
    )
    assert await answers.answer("track_order", alice, BOB_ORDER, "en") is None  # not hers
    assert await answers.answer("track_order", alice, None, "en") is None  # which order?
    zh = await answers.answer("track_order", alice, "100002", "zh")
    assert zh is not None and zh.startswith("您的订单 100002") and "已送达" in zh
    payment = await answers.answer("check_payment_methods", alice, None, "en")
    assert payment == "Payment methods: " + demo.policies["payment_methods"].text["en"]
    shipping = await answers.answer("delivery_period", alice, None, "zh-CN")
    assert shipping == "配送时效：" + demo.policies["shipping"].text["zh"]
    assert await answers.answer("complaint", alice, None, "en") is None


def test_a_shops_template_file_is_merged_and_checked(tmp_path: Any) -> None:
    good = tmp_path / "templates.json"
    good.write_text(json.dumps({"check_payment_methods": {"en": "Pay with: {policy}"}}))
    templates = load_templates(str(good))
    assert templates["check_payment_methods"]["en"] == "Pay with: {policy}"
    assert templates["check_payment_methods"]["zh"].startswith("支付方式")
    for bad, problem in (
        ({"track_order": {"en": "{address}"}}, "unknown field"),
        ({"complaint": {"en": "sorry"}}, "not an intent"),
        ({"delivery_period": "text"}, "locale -> text"),
    ):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=problem):
            load_templates(str(path))
